"""The CLI's shape and the analyst's view of a story."""

from __future__ import annotations

import pytest

from streams.content import load_content
from streams.engine import SECOND_NS, EngineSettings, StoryEngine
from streams.events import Envelope, Pod, Proc
from topologies.cli import build_parser, main
from topologies.tail import render_story

COMMANDS = [["broker"], ["topics", "list"], ["worker"], ["stories", "tail"], ["replay"],
            ["collect", "kernel"], ["collect", "l7"], ["collect", "cloudtrail"], ["demo"]]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*argv, "--help"])
    assert exit_info.value.code == 0
    command = " ".join(a for a in argv if a not in ("list", "tail"))  # positionals
    assert "usage: agentstory " + command in capsys.readouterr().out


@pytest.mark.parametrize("argv", [c for c in COMMANDS if c[0] not in ("broker",)], ids=" ".join)
def test_bootstrap_servers_come_from_the_environment(
        argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSTORY_BOOTSTRAP_SERVERS", "kafka-0:9092,kafka-1:9092")
    extra = ["--dir", "/tmp"] if argv == ["collect", "cloudtrail"] else []
    args = build_parser().parse_args([*argv, *extra])
    assert args.bootstrap_servers == "kafka-0:9092,kafka-1:9092"


def test_topics_list_prints_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "list"]) == 0
    out = capsys.readouterr().out
    assert "agentstory.stories.v1" in out and "compact" in out


def test_render_story_reads_as_a_chain() -> None:
    pod = Pod(uid="u-1", namespace="support", name="bot-1", agent="support/Deployment/bot")
    engine = StoryEngine(load_content(), EngineSettings(learning_ns=SECOND_NS, min_events=2))
    state = engine.new_state(pod.agent)
    stories = []
    for second, exe in enumerate(["/usr/bin/python3", "/usr/bin/python3", "/usr/bin/python3",
                                  "/bin/sh", "/usr/bin/curl"]):
        stories += engine.process(state, Envelope(
            "process.exec", 1_763_700_000 * SECOND_NS + second * SECOND_NS, "node-a",
            "kernel", {"argv": [exe, "-c", "x"]}, pod=pod,
            proc=Proc(pid=10 + second, ppid=9, comm=exe.rsplit("/", 1)[1], exe=exe)))
    text = render_story(stories[-1].to_ocsf())
    lines = text.splitlines()
    assert lines[0].startswith("[HIGH] Agent spawned a shell it never ran while learning")
    assert "v2)" in lines[0]
    assert "pod support/bot-1" in lines[1] and "agent support/Deployment/bot" in lines[1]
    assert "T1059.004" in lines[2] and "T1105" in lines[2]
    assert lines[3].endswith("ran `/bin/sh -c x`") and "04:40:03" in lines[3]
    assert "why: support/Deployment/bot never ran /bin/sh" in lines[4]
    assert "[kernel]" in lines[5] and "/usr/bin/curl" in lines[5]
