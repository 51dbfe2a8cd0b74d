"""The story engine: one agent's events in, attack stories out. Pure: no Faust, no Kafka.

For each event, on event time: score it against the agent's baseline (``models``), evaluate
the signal catalogue on it (``signals``), add its hits to the pod's incident
(``incidents``), link the steps (``links``) and publish a story version when the incident
is due. Learning waits: an event is learned only once it is behind the watermark of the
slowest source (a late cloud step can still make it part of an incident), and never when
it belongs to an open story. Faust calls :meth:`StoryEngine.apply` per by-agent message and
writes the state back by assignment; replay and the tests call the same methods.
"""

from __future__ import annotations

import base64
import heapq
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from models.features import Observation
from models.frozen import FrozenAllowlist
from models.inventory import Inventory
from models.novelty import NoveltySettings
from models.phases import PhaseSettings
from models.profile import AgentProfile, ProfileSettings
from streams.content import DetectionContent, Technique
from streams.events import Envelope, Pod
from streams.incidents import Incident
from streams.links import PodContext, link_facts, link_steps
from streams.signals import Hit, SignalEvaluator
from streams.steps import describe, evidence
from streams.stories import Step, Story, story_uid

__all__ = ["AgentState", "EngineSettings", "Message", "StoryEngine", "agent_of_event",
           "event_ref"]

SECOND_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class EngineSettings:
    learning_ns: int = 3600 * SECOND_NS  # event time an agent learns before it is judged
    min_events: int = 20  # observations a dimension needs before it judges
    lateness_ns: dict[str, int] = field(default_factory=lambda: {
        "kernel": SECOND_NS // 2, "l7": SECOND_NS // 2, "cloud": 20 * 60 * SECOND_NS})
    # Events wait until these sources' watermarks pass them and are then taken in event
    # time order, so a story does not depend on which topic was read first. Cloud is not
    # waited for (it is minutes late by nature; its calls wait for these instead).
    ordered_sources: tuple[str, ...] = ("kernel", "l7")
    max_waiting: int = 4096  # events waiting for the ordering watermark, per agent
    source_idle_ns: int = 40 * 60 * SECOND_NS  # a source read to its end this far behind is idle
    retain_closed_ns: int = 3600 * SECOND_NS  # a closed story still takes late steps this long
    max_pending: int = 4096  # events waiting to be learned per agent
    max_pods: int = 256  # pod contexts kept per agent
    pod_idle_ns: int = 3600 * SECOND_NS  # a pod context with no event this long is dropped
    evidence_policy: str = "keep"  # tool arguments/results in evidence: keep | hash | drop
    baseline: str = "adaptive"  # or "frozen": the exact-set allowlist, for comparison

    def key(self) -> str:
        """What of the settings a story depends on (stories carry it with the content)."""
        return (f"l{self.learning_ns // SECOND_NS}m{self.min_events}e{self.evidence_policy}"
                + ("" if self.baseline == "adaptive" else f"b{self.baseline}"))


@dataclass(frozen=True, slots=True)
class Message:
    """One by-agent message: events of one raw frame, its origin and the route's watermarks."""

    events: list[Envelope]
    origin: tuple[str, int, int] | None = None  # raw topic, partition, offset
    watermarks: dict[str, int] = field(default_factory=dict)  # source → event time
    refs: list[str] = field(default_factory=list)  # raw event ids, parallel to events


@dataclass
class PodState:
    pod: dict[str, Any]
    node: str
    ctx: PodContext = field(default_factory=PodContext)
    incidents: list[Incident] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # layers seen for this pod
    # what a collector said it cannot see in this pod: [{layer, path, tls}] (bounded)
    blind: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"pod": self.pod, "node": self.node, "ctx": self.ctx.to_dict(),
                "incidents": [i.to_dict() for i in self.incidents], "sources": self.sources,
                "blind": self.blind}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> PodState:
        return cls(doc["pod"], doc["node"], PodContext.from_dict(doc["ctx"]),
                   [Incident.from_dict(i) for i in doc["incidents"]], doc["sources"],
                   doc.get("blind", []))


Baseline = AgentProfile | FrozenAllowlist


def baseline_from_dict(doc: dict[str, Any]) -> Baseline:
    if doc.get("kind") == "frozen":
        return FrozenAllowlist.from_dict(doc)
    return AgentProfile.from_dict(doc)


@dataclass
class AgentState:
    agent: str
    profile: Baseline
    pods: dict[str, PodState] = field(default_factory=dict)
    # heap of [ts, seq, pod uid, [[dimension, value], …]]: observations waiting to be learned
    pending: list[list[Any]] = field(default_factory=list)
    # heap of [ts, seq, raw id, Envelope, its JSON]: events waiting for the ordering
    # watermark (the JSON made once: the state is written once per message)
    waiting: list[list[Any]] = field(default_factory=list)
    hwm: dict[str, int] = field(default_factory=dict)  # "topic:partition" → offset applied
    wm: dict[str, int] = field(default_factory=dict)  # source → watermark
    losses: dict[str, int] = field(default_factory=dict)  # "node/source" → events lost
    stats: dict[str, int] = field(default_factory=dict)
    inventory: Inventory = field(default_factory=Inventory)  # what it uses (the AI-BOM)
    # node → {"mode", "since_ns"}: the enforcer's mode for this agent (enforce.mode events)
    enforcement: dict[str, dict[str, Any]] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "profile": self.profile.to_dict(),
                "pods": {k: p.to_dict() for k, p in self.pods.items()},
                "pending": self.pending, "hwm": self.hwm, "wm": self.wm,
                "losses": self.losses, "stats": self.stats,
                "waiting": _pack_waiting(self.waiting),
                "inventory": self.inventory.to_dict(),
                **({"enforcement": self.enforcement} if self.enforcement else {})}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> AgentState:
        return cls(doc["agent"], baseline_from_dict(doc["profile"]),
                   {k: PodState.from_dict(p) for k, p in doc["pods"].items()},
                   doc["pending"], _unpack_waiting(doc.get("waiting", [])),
                   doc["hwm"], doc["wm"], doc["losses"], doc["stats"],
                   Inventory.from_dict(doc.get("inventory")), doc.get("enforcement") or {})


def _pack_waiting(waiting: list[list[Any]]) -> Any:
    """The waiting events as stored, from each one's JSON made when it arrived: plain in
    the steady state (half a second of events), compressed when a catch-up makes them
    many, so the agent's state stays one changelog message under the request size (JSON
    envelopes compress about tenfold)."""
    plain = orjson.dumps([[ts, seq, ref, raw] for ts, seq, ref, _event, raw in waiting])
    if len(plain) <= 256_000:
        return orjson.Fragment(plain)
    return {"zlib": base64.b64encode(zlib.compress(plain, 1)).decode()}


def _unpack_waiting(doc: Any) -> list[list[Any]]:
    rows = orjson.loads(zlib.decompress(base64.b64decode(doc["zlib"]))) \
        if isinstance(doc, dict) else doc
    return [[ts, seq, ref, Envelope.from_dict(e), orjson.Fragment(orjson.dumps(e))]
            for ts, seq, ref, e in rows]


def agent_of_event(event: Envelope) -> str | None:
    """The baseline unit of an event; None when it belongs to no agent.

    A cloud call whose key maps to several pods of one agent carries that agent in
    ``data.attribution``: it joins the agent, never one pod by a guess."""
    pod = event.pod
    if pod is None:
        attribution = event.data.get("attribution")
        if isinstance(attribution, dict) and attribution.get("agent"):
            return str(attribution["agent"])
        return None
    if pod.agent:
        return pod.agent
    if pod.namespace and pod.name:
        return f"{pod.namespace}/Pod/{pod.name}"
    return f"unknown/Pod/{pod.uid}"


def event_ref(topic: str, partition: int, offset: int, index: int) -> str:
    return f"{topic}:{partition}:{offset}:{index}"


class StoryEngine:
    def __init__(self, content: DetectionContent, settings: EngineSettings | None = None) -> None:
        self.content = content
        self.settings = settings or EngineSettings()
        self.rules = content.incidents
        self.evaluator = SignalEvaluator(content, self.settings.evidence_policy)
        learning = self.settings.learning_ns
        # The phase windows scale with the learning span: six of them must settle in it.
        self.profile_settings = ProfileSettings(
            novelty=NoveltySettings(min_obs=self.settings.min_events),
            phases=PhaseSettings(min_span_ns=learning, window_ns=max(SECOND_NS, learning // 6)))
        self.version = f"{content.version}/{self.settings.key()}"

    def new_state(self, agent: str) -> AgentState:
        if self.settings.baseline == "frozen":
            return AgentState(agent, FrozenAllowlist(agent, self.settings.learning_ns))
        return AgentState(agent, AgentProfile(agent, self.profile_settings))

    # -- the message loop ------------------------------------------------------------------
    def apply(self, state: AgentState, message: Message) -> list[Story]:
        """Apply one by-agent message once (a re-delivered one is skipped), then advance."""
        if message.origin is not None:
            topic, partition, offset = message.origin
            key = f"{topic}:{partition}"
            if offset <= state.hwm.get(key, -1):
                state.count("redelivered_skipped")
                return []
            state.hwm[key] = offset
        for source, ts in message.watermarks.items():
            state.wm[source] = max(ts, state.wm.get(source, 0))
        stories: list[Story] = []
        for i, event in enumerate(message.events):
            ref = message.refs[i] if i < len(message.refs) else ""
            state.inventory.observe(event)
            if event.kind == "collector.stats":
                self._heartbeat(state, event)
                continue
            if event.kind == "enforce.mode":  # a fact about the agent, nothing to order
                self._enforcement(state, event)
                continue
            state.count("waited")
            heapq.heappush(state.waiting, [event.ts, state.stats["waited"], ref, event,
                                           orjson.Fragment(event.to_json())])
            if len(state.waiting) > self.settings.max_waiting:
                stories.extend(self.release_early(state, 1))
        return stories + self.advance(state)

    @staticmethod
    def _enforcement(state: AgentState, event: Envelope) -> None:
        """Which mode the enforcer applies to this agent on the event's node, since when."""
        since = int(event.data.get("since_ns") or event.ts)
        state.enforcement[event.node] = {
            "mode": event.data.get("mode"), "since_ns": since,
            "since": datetime.fromtimestamp(since / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}

    def release_early(self, state: AgentState, n: int) -> list[Story]:
        """Process the ``n`` oldest waiting events now, before the ordering watermark
        passes them (over a bound: taken early rather than lost; counted)."""
        stories: list[Story] = []
        for _ in range(min(n, len(state.waiting))):
            _ts, _seq, ref, event, _raw = heapq.heappop(state.waiting)
            stories.extend(self.process(state, event, ref=ref))
            state.count("released_early")
        return stories

    def process(self, state: AgentState, event: Envelope, *, ref: str = "") -> list[Story]:
        """Score one event, evaluate the signals, extend the pod's incident."""
        found = self._evaluate(state, event)
        if found is None:
            return []
        pod_state, hits, facts, queued = found
        if not hits:
            return []
        if queued is not None:
            queued.append(1)  # flagged: held (K days or a verdict), never simply learned
        state.profile.protect(event.ts)
        for hit in hits:
            signal = self.content.signal(hit.signal)
            if signal.reopens:
                state.profile.reopen(signal.reopens, signal.title.lower())
        state.count("hits", len(hits))
        step = self._step(event, hits, facts, ref)
        incident = self._incident_for(pod_state, event.ts)
        incident.add(step, self.rules)
        story = self._publish(state, pod_state, incident)
        return [story] if story is not None else []

    def evaluate(self, state: AgentState, event: Envelope) -> list[Hit]:
        """The hits of one event, with its context recorded and its learning queued, but
        no incident: what the signal samples and tuning tools look at."""
        found = self._evaluate(state, event)
        return found[1] if found else []

    def _evaluate(self, state: AgentState, event: Envelope,
                  ) -> tuple[PodState, list[Hit], dict[str, Any], list[Any] | None] | None:
        if event.kind == "collector.stats":
            self._heartbeat(state, event)
            return None
        pod_state = self._pod_state(state, event)
        if pod_state is None:
            state.count("unattributed")
            return None
        if event.kind == "collector.blind_spot":
            self._blind_spot(pod_state, event)
            return None
        if event.source not in pod_state.sources:
            pod_state.sources.append(event.source)
        profile = state.profile
        scores = profile.score(event)
        hits, marks = self.evaluator.evaluate(
            event, scores, judging=profile.judging_at(event.ts), since=pod_state.ctx.since,
            agent=state.agent)
        facts = link_facts(event, pod_state.ctx)  # before observe: the event's own context
        pod_state.ctx.observe(event)
        for mark in marks:
            pod_state.ctx.mark(mark.lstrip("-"), event.ts, on=not mark.startswith("-"))
        queued = self._queue_learning(state, pod_state, event.ts, scores.observations)
        return pod_state, hits, facts, queued

    def watermark(self, state: AgentState) -> int | None:
        """The slowest source's watermark: learning and closing follow it. (The route
        stamps an idle source with the others' time: see :mod:`streams.watermarks`.)"""
        return min(state.wm.values(), default=None)

    def _release(self, state: AgentState) -> list[Story]:
        """Process, in event-time order, the waiting events the ordering sources'
        watermarks have passed (the slowest source's, when none of them reports yet, as
        with CloudTrail alone; all of them when there is no watermark at all)."""
        marks = [state.wm[s] for s in self.settings.ordered_sources if s in state.wm]
        until = min(marks) if marks else self.watermark(state)
        stories: list[Story] = []
        while state.waiting and (until is None or state.waiting[0][0] <= until):
            _ts, _seq, ref, event, _raw = heapq.heappop(state.waiting)
            stories.extend(self.process(state, event, ref=ref))
        return stories

    def advance(self, state: AgentState) -> list[Story]:
        """Learn what fell behind the slowest watermark, process the events the ordering
        watermark released, close quiet incidents."""
        watermark = self.watermark(state)
        if watermark is None:
            return self._release(state)
        self._learn_until(state, watermark)
        state.profile.advance(watermark)
        stories = self._release(state)
        self._learn_until(state, watermark)  # released events the watermark has passed
        for uid in list(state.pods):
            pod_state = state.pods[uid]
            for incident in list(pod_state.incidents):
                quiet_until = incident.last_ts + self.rules.quiet_ns
                if quiet_until >= watermark:
                    continue
                if incident.opened and not incident.closed:
                    incident.closed = True
                    stories.append(self._story(state, pod_state, incident, "close"))
                if not incident.opened or (
                        quiet_until + self.settings.retain_closed_ns < watermark):
                    pod_state.incidents.remove(incident)
            if not pod_state.incidents and pod_state.ctx.last_ts + self.settings.pod_idle_ns \
                    < watermark:
                del state.pods[uid]
                state.count("pods_idle_dropped")
        return stories

    def dispose(self, state: AgentState, story: str, verdict: str, ts: int, *, by: str = "",
                note: str = "") -> list[Story]:
        """An analyst's verdict. ``benign`` closes the story and teaches the baseline the
        values it flagged; ``malicious`` marks it (its values stay unlearned)."""
        if verdict not in ("benign", "malicious"):
            raise ValueError(f"verdict must be benign or malicious, not {verdict!r}")
        for pod_state in state.pods.values():
            for incident in pod_state.incidents:
                if incident.uid != story:
                    continue
                incident.disposition = {"verdict": verdict, "by": by, "note": note, "ts": ts}
                if verdict == "malicious":
                    return [self._story(state, pod_state, incident, "update")]
                for step in incident.steps:
                    for dimension, value in step.get("learn", []):
                        state.profile.accept(dimension, value, ts)
                        state.count("accepted_by_disposition")
                incident.closed = True
                pod_state.incidents.remove(incident)
                return [self._story(state, pod_state, incident, "close")]
        state.count("disposition_for_unknown_story")
        return []

    # -- pieces ---------------------------------------------------------------------------
    def _heartbeat(self, state: AgentState, event: Envelope) -> None:
        lost = sum(v for k, v in event.data.items()
                   if isinstance(v, int) and ("lost" in k or "dropped" in k))
        state.losses[f"{event.node}/{event.source}"] = lost

    @staticmethod
    def _blind_spot(pod_state: PodState, event: Envelope) -> None:
        """A collector cannot see part of this pod (TLS it cannot read): the pod's stories
        say so instead of implying silence."""
        spot = {"layer": str(event.data.get("layer", event.source)),
                "path": str(event.data.get("path", "")),
                "tls": sorted(str(t) for t in event.data.get("tls") or [])}
        if spot not in pod_state.blind and len(pod_state.blind) < 16:
            pod_state.blind.append(spot)

    def _pod_state(self, state: AgentState, event: Envelope) -> PodState | None:
        pod = event.pod
        if pod is None:
            pod = self._pod_by_link(state, event)
        if pod is None:
            return None
        pod_state = state.pods.get(pod.uid)
        if pod_state is None:
            if len(state.pods) >= self.settings.max_pods:
                idle = min((p for p in state.pods.values() if not p.incidents),
                           key=lambda p: p.ctx.last_ts, default=None)
                if idle is not None:
                    del state.pods[next(k for k, v in state.pods.items() if v is idle)]
                    state.count("pods_evicted")
            pod_state = state.pods[pod.uid] = PodState(pod.to_dict(), event.node)
        return pod_state

    def _pod_by_link(self, state: AgentState, event: Envelope) -> Pod | None:
        """A cloud call of an agent with several pods: the one pod that connected to that
        AWS service just before, else the agent-level incident (never a guess)."""
        if event.kind != "cloud.api":
            return None
        attribution = event.data.get("attribution") or {}
        candidates = set(attribution.get("candidates") or state.pods)
        service = str(event.data.get("service") or "")
        tied = [uid for uid in sorted(candidates) if uid in state.pods
                and link_facts(event, state.pods[uid].ctx).get("aws_connect")]
        if len(tied) == 1 and service:
            return Pod.from_dict(state.pods[tied[0]].pod)
        namespace, _, name = state.agent.partition("/")
        return Pod(uid=f"agent:{state.agent}", namespace=namespace,
                   name=f"any pod of {name}", agent=state.agent)

    def _queue_learning(self, state: AgentState, pod_state: PodState, ts: int,
                        observations: tuple[Observation, ...]) -> list[Any] | None:
        """Queue the observations until the slowest watermark passes ``ts``; the entry
        (``[ts, seq, pod, pairs]``, ``+ [1]`` once flagged) is returned to be marked."""
        if not observations:
            return None
        state.count("queued")
        entry = [ts, state.stats["queued"], str(pod_state.pod["uid"]),
                 [[o.dimension, o.value] for o in observations]]
        heapq.heappush(state.pending, entry)
        if len(state.pending) > self.settings.max_pending:
            # Over the bound: learn the oldest now rather than lose it (counted).
            self._learn_one(state, heapq.heappop(state.pending))
            state.count("learned_early")
        return entry

    def _learn_until(self, state: AgentState, watermark: int) -> None:
        while state.pending and state.pending[0][0] <= watermark:
            self._learn_one(state, heapq.heappop(state.pending))

    def _learn_one(self, state: AgentState, item: list[Any]) -> None:
        """Learn one queued event. A flagged one is held (learned after recurring on K
        days with no story, or by a verdict). While a story is open on its pod, only what
        the baseline already knows is learned: nothing new is taught during an incident
        (the rest is held), yet the pod's ordinary work keeps the baseline current."""
        ts, _seq, pod_uid, pairs = item[:4]
        profile = state.profile
        observations = [Observation(d, v) for d, v in pairs]
        if len(item) > 4:
            profile.hold_observations(observations, ts)
            state.count("held_flagged")
            return
        pod_state = state.pods.get(pod_uid)
        if pod_state is not None and any(i.opened and i.first_ts <= ts <= i.last_ts
                                         for i in pod_state.incidents):
            new = [o for o in observations if not profile.knows(o)]
            if new:
                profile.hold_observations(new, ts)
                state.count("held_in_story")
                observations = [o for o in observations if profile.knows(o)]
        profile.learn_observations(observations, ts)
        state.count("learned")

    def _incident_for(self, pod_state: PodState, ts: int) -> Incident:
        for incident in pod_state.incidents:
            if incident.covers(ts, self.rules):
                # A late step of a closed story (a source that was read behind the others)
                # reopens it under the same uid rather than starting a second story.
                incident.closed = False
                return incident
        incident = Incident(pod_state.pod, pod_state.node)
        pod_state.incidents.append(incident)
        if len(pod_state.incidents) > 4:  # bounded: the oldest unopened one goes first
            stale = next((i for i in pod_state.incidents if not i.opened),
                         pod_state.incidents[0])
            pod_state.incidents.remove(stale)
        return incident

    def _step(self, event: Envelope, hits: list[Hit], facts: dict[str, Any], ref: str,
              ) -> dict[str, Any]:
        """One step per event: its riskiest hit names it, every hit adds its why."""
        hits = sorted(hits, key=lambda h: -h.risk)
        main = self.content.signal(hits[0].signal)
        policy = self.settings.evidence_policy
        return {"layer": event.source, "ts": event.ts, "kind": event.kind,
                "what": describe(event, policy), "why": "; ".join(h.why for h in hits),
                "signal": main.id, "risks": {h.signal: h.risk for h in hits},
                "learn": sorted({(h.dimension, h.value) for h in hits if h.dimension}),
                "risk": sum(h.risk for h in hits), "stage": main.stage, "value": hits[0].value,
                "critical": any(h.critical for h in hits), "evidence": evidence(event, policy),
                "facts": facts, "ref": ref}

    def _publish(self, state: AgentState, pod_state: PodState, incident: Incident,
                 ) -> Story | None:
        if not incident.opened:
            if not incident.due(self.rules):
                return None
            anchor = incident.steps[0]
            incident.uid = story_uid(state.agent, str(pod_state.pod["uid"]),
                                     str(anchor["ts"]), anchor["kind"])
            incident.phase = state.profile.phase
            return self._story(state, pod_state, incident, "create")
        return self._story(state, pod_state, incident, "update")

    def _story(self, state: AgentState, pod_state: PodState, incident: Incident,
               activity: str) -> Story:
        incident.version += 1
        chain = [dict(s) for s in incident.steps]
        link_steps(chain)
        signals = self.content
        seen: list[str] = []
        techniques: list[Technique] = []
        stages: list[str] = []
        severity = 1
        for step in chain:
            for signal_id in step["risks"]:
                signal = signals.signal(signal_id)
                severity = max(severity, signal.severity_id)
                if signal.id not in seen:
                    seen.append(signal.id)
                techniques.extend(t for t in signal.techniques if t not in techniques)
            if step["stage"] not in stages:
                stages.append(step["stage"])
        risk_class = state.profile.risk()
        if len(stages) >= 3 or (risk_class.level == "high" and len(stages) >= 2):
            severity = min(5, severity + 1)
        titles = self.rules.stage_titles
        title = " → ".join(titles[s] for s in stages)
        title = title[:1].upper() + title[1:]
        steps = tuple(Step(
            layer=s["layer"], ts=s["ts"], kind=s["kind"], what=s["what"], why=s["why"],
            signal=s["signal"], evidence=s["evidence"], risk=s["risk"], stage=s["stage"],
            count=s.get("count", 1), last_ts=s.get("last_ts", s["ts"]), link=s.get("link"),
            ref=s.get("ref", "")) for s in chain)
        layers = sorted(pod_state.sources)
        observed = {"layers": layers, "blind": sorted({"kernel", "l7", "cloud"} - set(layers)),
                    "blind_spots": list(pod_state.blind),
                    "lost_events": {k: v for k, v in state.losses.items()
                                    if v and k.startswith(pod_state.node + "/")}}
        return Story(
            uid=incident.uid, title=title, node=pod_state.node,
            pod=Pod.from_dict(pod_state.pod), agent=state.agent, severity_id=severity,
            steps=steps, techniques=tuple(techniques), signals=tuple(seen),
            baseline_phase=incident.phase, version=incident.version, activity=activity,
            risk_score=min(100, incident.risk(self.rules)),
            risk_class={"level": risk_class.level, "reasons": list(risk_class.reasons)},
            observed=observed, content_version=self.version, dropped_steps=incident.dropped,
            disposition=incident.disposition or {},
        )
