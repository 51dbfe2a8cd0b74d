"""Run the story engine over a sequence of events outside Faust (replay, tests, tuning).

The worker keeps one :class:`~streams.engine.AgentState` per agent in a table; here the
states live in a dict, and the per-source watermarks are kept the way ``route`` keeps them
(:class:`~streams.watermarks.Watermarks`, one partition read in the given order). Same
engine, same event-time logic, so a replay of the raw topics with the same settings
yields the same story uids as the live run. :meth:`Replayer.finish` moves every
watermark past the end, so every story reaches its final (closed) version.
"""

from __future__ import annotations

from collections.abc import Iterable

from streams.engine import AgentState, Message, StoryEngine, agent_of_event
from streams.events import Envelope
from streams.stories import Story
from streams.watermarks import Watermarks

__all__ = ["Replayer"]

_END = 2**62


class Replayer:
    def __init__(self, engine: StoryEngine) -> None:
        self.engine = engine
        self.states: dict[str, AgentState] = {}
        self.marks = Watermarks(engine.settings.lateness_ns, engine.settings.source_idle_ns)
        self.events = 0
        self.unattributed = 0

    def _state(self, agent: str) -> AgentState:
        state = self.states.get(agent)
        if state is None:
            state = self.states[agent] = self.engine.new_state(agent)
        return state

    def feed(self, events: Iterable[Envelope], refs: Iterable[str] = ()) -> list[Story]:
        """Story versions produced by ``events`` (one message per event), in order."""
        stories: list[Story] = []
        ref_iter = iter(refs)
        for event in events:
            self.events += 1
            ref = next(ref_iter, "")
            self.marks.see(event)
            agent = agent_of_event(event)
            if agent is None:
                if event.kind != "collector.stats":
                    self.unattributed += 1
                continue
            message = Message([event], None, self.marks.current(), [ref] if ref else [])
            stories.extend(self.engine.apply(self._state(agent), message))
        return stories

    def finish(self, at: int = _END) -> list[Story]:
        """Every source's watermark moved to ``at`` (default: past the end of time):
        learning completes, quiet stories close."""
        stories: list[Story] = []
        end = Message([], None, {src: at for src in self.marks.newest})
        for state in self.states.values():
            stories.extend(self.engine.apply(state, end))
        return stories

    @staticmethod
    def latest(stories: Iterable[Story]) -> list[Story]:
        """The last version of each story, in order of first appearance."""
        last: dict[str, Story] = {}
        for story in stories:
            last[story.uid] = story
        return list(last.values())
