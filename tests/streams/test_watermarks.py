from __future__ import annotations

from streams.events import Envelope
from streams.watermarks import Watermarks

S = 1_000_000_000


def ev(source: str, ts_s: int) -> Envelope:
    return Envelope("net.connect", ts_s * S, "node-a", source)


def test_a_partition_with_messages_left_holds_its_source_back() -> None:
    marks = Watermarks({"kernel": 0}, idle_ns=3600 * S)
    marks.see(ev("kernel", 100), ("raw.kernel", 0), backlog=True)  # a pod, read behind
    marks.see(ev("kernel", 5000), ("raw.kernel", 1), backlog=False)  # the node's heartbeat
    assert marks.current() == {"kernel": 100 * S}
    marks.see(ev("kernel", 200), ("raw.kernel", 0), backlog=True)
    assert marks.current() == {"kernel": 200 * S}
    marks.see(ev("kernel", 300), ("raw.kernel", 0), backlog=False)  # read to its end
    assert marks.current() == {"kernel": 5000 * S}
    assert marks.newest == {"kernel": 5000 * S}


def test_sources_are_apart_and_lateness_is_taken_off() -> None:
    marks = Watermarks({"kernel": S, "cloud": 600 * S}, idle_ns=3600 * S)
    marks.see(ev("kernel", 100), ("raw.kernel", 0))
    marks.see(ev("cloud", 2000), ("raw.cloud", 0), backlog=True)
    marks.see(ev("cloud", 1000), ("raw.cloud", 1), backlog=True)
    assert marks.current() == {"kernel": 99 * S, "cloud": 400 * S}


def test_a_source_read_to_its_end_far_behind_is_idle_one_being_caught_up_is_not() -> None:
    marks = Watermarks({"kernel": 0, "l7": 0, "cloud": 0}, idle_ns=600 * S)
    marks.see(ev("kernel", 5000), ("raw.kernel", 0))
    marks.see(ev("l7", 4990), ("raw.l7", 0))
    marks.see(ev("cloud", 1000), ("raw.cloud", 0))  # nothing more to deliver
    assert marks.current() == {"kernel": 5000 * S, "l7": 4990 * S, "cloud": 4990 * S}
    marks.see(ev("cloud", 1100), ("raw.cloud", 0), backlog=True)  # a flood: catching up
    assert marks.current()["cloud"] == 1100 * S


def test_partitions_read_ahead_of_the_slowest_with_backlog_are_paced() -> None:
    marks = Watermarks({}, idle_ns=3600 * S)
    marks.see(ev("kernel", 100), ("raw.kernel", 0), backlog=True)
    marks.see(ev("l7", 125), ("raw.l7", 0), backlog=True)
    marks.see(ev("l7", 4000), ("raw.l7", 1), backlog=True)
    assert marks.ahead(30 * S) == {("raw.l7", 1)}
    marks.see(ev("kernel", 4000), ("raw.kernel", 0), backlog=False)  # read to its end
    assert marks.ahead(30 * S) == {("raw.l7", 1), ("raw.kernel", 0)}  # l7/0 is behind
    marks.see(ev("l7", 3990), ("raw.l7", 0), backlog=True)
    assert marks.ahead(30 * S) == set()
