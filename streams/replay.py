"""Run the story engine over a sequence of events outside Faust (replay, tests, tuning).

The worker keeps one :class:`~streams.detect.AgentState` per agent in a table; here the
states live in a dict. Same engine, same event-time logic, so a replay of the raw topics
with the same settings yields the same story uids as the live run.
"""

from __future__ import annotations

from collections.abc import Iterable

from streams.detect import AgentState, StoryEngine, agent_of_event
from streams.events import Envelope
from streams.stories import Story

__all__ = ["Replayer"]


class Replayer:
    def __init__(self, engine: StoryEngine) -> None:
        self.engine = engine
        self.states: dict[str, AgentState] = {}
        self.events = 0
        self.unattributed = 0

    def feed(self, events: Iterable[Envelope]) -> list[Story]:
        """Story versions produced by ``events``, in order."""
        stories: list[Story] = []
        for event in events:
            self.events += 1
            agent = agent_of_event(event)
            if agent is None:
                self.unattributed += 1
                continue
            state = self.states.get(agent)
            if state is None:
                state = self.states[agent] = self.engine.new_state(agent)
            stories.extend(self.engine.process(state, event))
        return stories

    @staticmethod
    def latest(stories: Iterable[Story]) -> list[Story]:
        """The last version of each story, in order of first appearance."""
        last: dict[str, Story] = {}
        for story in stories:
            last[story.uid] = story
        return list(last.values())
