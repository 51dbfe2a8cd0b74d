"""The worker side (pure engine): a refused exfiltration is still a story step, alone it
opens a story, and enforce.mode tells the agent's state which mode applies since when."""

from __future__ import annotations

import time

from collectors.enforce.envelopes import mode_envelope
from streams.content import load_content
from streams.engine import SECOND_NS, EngineSettings, StoryEngine
from streams.events import Envelope, Proc
from streams.replay import Replayer
from tests.streams.scenario import BOT, NODE, attack, learning

SETTINGS = EngineSettings(learning_ns=1800 * SECOND_NS, min_events=10)


def blocked(ts: int, addr: str, port: int, pid: int = 6001, comm: str = "curl") -> Envelope:
    return Envelope("enforce.blocked", ts, NODE, "kernel", pod=BOT,
                    proc=Proc(pid=pid, comm=comm),
                    data={"op": "connect", "mode": "enforce", "policy_agent": BOT.agent,
                          "response": "EPERM", "dst_addr": addr, "dst_port": port,
                          "protocol": "tcp", "reason": "destination not allowed"})


def _learned() -> tuple[Replayer, int]:
    replayer = Replayer(StoryEngine(load_content(), SETTINGS))
    events = learning(seed=7, tickets=300)
    replayer.feed(events)
    return replayer, events[-1].ts + 60 * SECOND_NS


def test_blocked_exfiltration_is_a_step_of_the_attack_story() -> None:
    replayer, start = _learned()
    chain = attack(start)
    # under enforce the curl's connect to the exfiltration host is refused: the
    # enforcer's record stands where the connect was
    exfil = next(e for e in chain if e.kind == "net.connect" and e.proc and e.proc.pid == 6001)
    chain = [blocked(exfil.ts, str(exfil.data["dst_addr"]), 443) if e is exfil else e
             for e in chain]
    stories = Replayer.latest(replayer.feed(chain) + replayer.finish())
    ours = [s for s in stories if any(st.kind == "enforce.blocked" for st in s.steps)]
    assert len(ours) == 1, [s.title for s in stories]
    step = next(st for st in ours[0].steps if st.kind == "enforce.blocked")
    assert step.signal == "AS-E-EGRESS-BLOCKED"
    assert step.what == "curl (pid 6001) was refused a connection to 203.0.113.9:443 (EPERM)"
    assert step.evidence["dst_endpoint"] == {"ip": "203.0.113.9", "port": 443}
    assert "refused in the kernel (EPERM)" in step.why and "203.0.113.9:443" in step.why
    assert len(ours[0].steps) >= 3  # the injection and the tool call are there too


def test_a_refused_connect_alone_opens_a_story() -> None:
    replayer, start = _learned()
    stories = Replayer.latest(replayer.feed([blocked(start, "198.51.100.7", 8443)])
                              + replayer.finish())
    assert [[st.signal for st in s.steps] for s in stories] == [["AS-E-EGRESS-BLOCKED"]]


def test_enforce_mode_is_kept_per_node_with_its_start() -> None:
    replayer, start = _learned()
    replayer.feed([mode_envelope(BOT.agent, "audit", start, node=NODE, pods=1,
                                 policy_digest="x"),
                   mode_envelope(BOT.agent, "enforce", start + SECOND_NS, node=NODE, pods=1,
                                 policy_digest="x")])
    state = replayer.states[BOT.agent]
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((start + SECOND_NS) // SECOND_NS))
    assert state.enforcement == {NODE: {"mode": "enforce", "since_ns": start + SECOND_NS,
                                        "since": since}}
    assert type(state).from_dict(state.to_dict()).enforcement == state.enforcement


def test_a_killed_exec_is_a_step_saying_so() -> None:
    replayer, start = _learned()
    killed = Envelope("enforce.blocked", start, NODE, "kernel", pod=BOT,
                      proc=Proc(pid=7, comm="sh", exe="/usr/bin/curl"),
                      data={"op": "exec", "mode": "enforce", "response": "SIGKILL",
                            "filename": "/usr/bin/curl", "policy_agent": BOT.agent})
    [story] = Replayer.latest(replayer.feed([killed]) + replayer.finish())
    [step] = story.steps
    assert (step.signal, step.what) == ("AS-E-EXEC-KILLED",
                                        "sh (pid 7) was killed at exec of /usr/bin/curl")
    assert "killed at exec (SIGKILL) before its first instruction" in step.why
