"""What issue 17 costs: replay of the demo recording with and without the inventory, the
time to build a profile record (summary, policy facts, CycloneDX BOM built and validated),
and the bytes the inventory adds to an agent's state.

``python -m tests.models.bench_exports`` (best of 3; a shared machine's noise applies).
"""

from __future__ import annotations

import json
import statistics
import time

import models.inventory as inventory
from models.exports.facts import profile_record
from streams.content import load_content
from streams.engine import EngineSettings, StoryEngine
from streams.replay import Replayer
from tests.eval.evaluate import load_recording
from tests.models.demo_records import DEMO


def _replay(events: list) -> tuple[float, Replayer]:
    best, replayer = float("inf"), None
    for _ in range(3):
        replayer = Replayer(StoryEngine(load_content(), EngineSettings()))
        start = time.perf_counter()
        replayer.feed(events)
        replayer.finish()
        best = min(best, time.perf_counter() - start)
    assert replayer is not None
    return best, replayer


def main() -> None:
    events = load_recording(DEMO).events
    with_inv, replayer = _replay(events)
    real = inventory.Inventory.observe
    inventory.Inventory.observe = lambda self, event: None  # type: ignore[method-assign]
    try:
        without, _ = _replay(events)
    finally:
        inventory.Inventory.observe = real  # type: ignore[method-assign]
    print(f"replay of {len(events)} events: {with_inv:.2f} s with the inventory, "
          f"{without:.2f} s without")
    for agent, state in replayer.states.items():
        profile_record(state.profile, state.inventory)  # imports, schema load
        times = []
        for _ in range(21):
            start = time.perf_counter()
            profile_record(state.profile, state.inventory)
            times.append(time.perf_counter() - start)
        print(f"{agent}: profile record {1000 * statistics.median(times):.1f} ms (median of "
              f"21), inventory {len(json.dumps(state.inventory.to_dict()))} B of a "
              f"{len(json.dumps(state.to_dict()))} B state")


if __name__ == "__main__":
    main()
