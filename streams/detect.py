"""The story engine: per-agent baselines in, attack stories out. Pure: no Faust, no Kafka.

Faust calls :meth:`StoryEngine.process` with the agent's state from a table and writes
the state back by assignment; replay and the unit tests call it directly. Everything
runs on event time (``Envelope.ts``), so a replay of the same events gives the same
stories with the same uids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.profile import ExecProfile
from streams.content import DetectionContent, Signal
from streams.events import Envelope
from streams.stories import Step, Story, story_uid

__all__ = ["AgentState", "EngineSettings", "StoryEngine", "agent_of_event"]

SECOND_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class EngineSettings:
    learning_ns: int = 3600 * SECOND_NS  # event time an agent learns before it is judged
    min_events: int = 20  # and the execs it must have seen
    incident_window_ns: int = 600 * SECOND_NS  # a quiet gap this long closes a story
    max_steps: int = 32


@dataclass
class AgentState:
    profile: ExecProfile
    open_stories: dict[str, dict[str, Any]] = field(default_factory=dict)  # pod uid → state

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile.to_dict(), "open_stories": self.open_stories}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> AgentState:
        return cls(ExecProfile.from_dict(doc["profile"]), dict(doc.get("open_stories") or {}))


def agent_of_event(event: Envelope) -> str | None:
    """The baseline unit of an event; None when it belongs to no pod."""
    pod = event.pod
    if pod is None:
        return None
    if pod.agent:
        return pod.agent
    if pod.namespace and pod.name:
        return f"{pod.namespace}/Pod/{pod.name}"
    return f"unknown/Pod/{pod.uid}"


class StoryEngine:
    def __init__(self, content: DetectionContent, settings: EngineSettings | None = None) -> None:
        self.content = content
        self.settings = settings or EngineSettings()
        self.kinds = frozenset(s.kind for s in content.signals)

    def wants(self, event: Envelope) -> bool:
        """Whether any signal looks at this kind: the rest need not reach the engine."""
        return event.kind in self.kinds and event.pod is not None

    def phase(self, state: AgentState) -> str:
        return state.profile.phase(self.settings.learning_ns, self.settings.min_events)

    def new_state(self, agent: str) -> AgentState:
        return AgentState(ExecProfile(agent))

    def process(self, state: AgentState, event: Envelope) -> list[Story]:
        """Update ``state`` with one event; the story versions it produces (0 or 1)."""
        if event.kind != "process.exec" or event.pod is None:
            return []
        exe = (event.proc.exe if event.proc else "") or str(event.data.get("filename", ""))
        if not exe:
            return []
        profile = state.profile
        phase = self.phase(state)
        if phase == "learning":
            profile.observe(exe, event.ts, learn=True)
            return []
        novel = exe not in profile.executables and not self.content.in_list(
            "allowed_new_executables", exe)
        known_before = len(profile.executables)
        profile.observe(exe, event.ts, learn=not novel)
        if not novel:
            return []
        signal = self._first_match(event, exe)
        if signal is None:
            return []
        step = self._step(event, exe, signal, profile, known_before)
        return [self._extend(state, event, step, signal, phase)]

    def _first_match(self, event: Envelope, exe: str) -> Signal | None:
        for signal in self.content.signals:
            if signal.kind != event.kind or signal.novel not in (None, "exe"):
                continue
            if signal.exe_in is not None and not self.content.in_list(signal.exe_in, exe):
                continue
            return signal
        return None

    def _step(self, event: Envelope, exe: str, signal: Signal, profile: ExecProfile,
              known: int) -> Step:
        proc = event.proc
        argv = event.data.get("argv") or [exe]
        cmd = " ".join(str(a) for a in argv)[:200]
        parent = f"{proc.comm or 'pid'} (pid {proc.ppid})" if proc else "a process"
        learned_s = (profile.last_ts - profile.first_ts) // SECOND_NS
        if exe in profile.flagged and profile.flagged[exe] > 1:
            why = f"{exe} was flagged before and is never learned for this agent"
        else:
            why = (f"{profile.agent} never ran {exe} in {known} learned executables "
                   f"over {learned_s}s of its own history")
        evidence: dict[str, Any] = {"exe": exe, "argv": argv[:32]}
        if proc is not None:
            evidence.update(pid=proc.pid, ppid=proc.ppid, comm=proc.comm, uid=proc.uid)
        return Step(layer=event.source, ts=event.ts, kind=event.kind,
                    what=f"{parent} ran `{cmd}`", why=why, signal=signal.id, evidence=evidence)

    def _extend(self, state: AgentState, event: Envelope, step: Step, signal: Signal,
                phase: str) -> Story:
        assert event.pod is not None
        pod_uid = event.pod.uid
        current = state.open_stories.get(pod_uid)
        story = Story.from_state(current) if current else None
        if story is not None and step.ts - story.steps[-1].ts <= self.settings.incident_window_ns:
            story = story.with_step(step, signal, self.settings.max_steps)
        else:
            story = Story(
                uid=story_uid(state.profile.agent, pod_uid, str(step.ts), signal.id),
                title=signal.title, node=event.node, pod=event.pod,
                agent=state.profile.agent, severity_id=signal.severity_id, steps=(step,),
                techniques=signal.techniques, signals=(signal.id,), baseline_phase=phase,
            )
        state.open_stories[pod_uid] = story.to_state()
        self._close_quiet(state, step.ts)
        return story

    def _close_quiet(self, state: AgentState, now: int) -> None:
        """Forget stories whose last step is older than the incident window (bounded state)."""
        window = self.settings.incident_window_ns
        for pod_uid in [u for u, st in state.open_stories.items()
                        if now - st["steps"][-1]["ts"] > window]:
            del state.open_stories[pod_uid]
