"""The CLI's shape and the analyst's view of a story."""

from __future__ import annotations

import pytest

from streams.content import load_content
from streams.engine import SECOND_NS, EngineSettings, StoryEngine
from streams.replay import Replayer
from tests.streams.scenario import attack, learning
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


def test_render_story_reads_as_a_timeline_with_causal_arrows() -> None:
    events = learning(seed=7, tickets=400)
    events += attack(events[-1].ts)
    engine = StoryEngine(load_content(), EngineSettings(learning_ns=1800 * SECOND_NS,
                                                       min_events=10))
    replayer = Replayer(engine)
    [story] = Replayer.latest(replayer.feed(events) + replayer.finish())
    lines = render_story(story.to_ocsf()).splitlines()
    assert lines[0].startswith("[CRITICAL] Injected instructions → sensitive data access")
    assert "pod support/support-bot-7d9f8-abcde" in lines[1]
    assert "AML.T0051.001" in lines[2] and "close" in lines[2]
    exec_line = next(line for line in lines if "ran `curl" in line)
    assert "⇐ 3 causal: tool call → spawned process" in exec_line
    cloud_line = next(line for line in lines if "[cloud]" in line)
    assert "causal: cloud endpoint" in cloud_line
    assert any("why: support/Deployment/support-bot never ran /usr/bin/curl" in line
               for line in lines)
