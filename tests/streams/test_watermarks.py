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


def test_partitions_of_a_source_read_ahead_of_the_slowest_source_are_paced() -> None:
    marks = Watermarks({}, idle_ns=3600 * S)
    marks.see(ev("kernel", 100), ("raw.kernel", 0), backlog=True)
    marks.see(ev("kernel", 4000), ("raw.kernel", 1), backlog=True)  # same source: no pacing
    marks.see(ev("l7", 125), ("raw.l7", 0), backlog=True)
    marks.see(ev("l7", 4000), ("raw.l7", 1), backlog=True)
    assert marks.ahead(30 * S) == {("raw.l7", 1)}
    marks.see(ev("kernel", 4000), ("raw.kernel", 0), backlog=False)  # read to its end
    assert marks.ahead(30 * S) == {("raw.kernel", 0), ("raw.kernel", 1)}  # l7 is slowest
    marks.see(ev("l7", 3990), ("raw.l7", 0), backlog=True)
    assert marks.ahead(30 * S) == set()


def test_read_live_a_quiet_source_is_idle_and_its_lateness_has_passed() -> None:
    marks = Watermarks({"kernel": S, "l7": S}, idle_ns=3600 * S, recent_s=2.0)
    marks.see(ev("kernel", 100), ("raw.kernel", 0), now=10.0)
    marks.see(ev("l7", 40), ("raw.l7", 0), now=10.0)
    assert marks.current(now=11.0) == {"kernel": 99 * S, "l7": 39 * S}  # both being read
    # l7 went quiet: it holds nothing back; once kernel is quiet too, all is released
    marks.see(ev("kernel", 101), ("raw.kernel", 0), now=12.5)
    assert marks.current(now=13.0) == {"kernel": 100 * S, "l7": 100 * S}
    assert marks.current(now=15.0) == {"kernel": 101 * S, "l7": 101 * S}
