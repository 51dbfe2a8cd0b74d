"""The profile records of a recording's agents after a replay through the engine.

``python -m tests.models.demo_records OUT_DIR [RECORDING]`` writes one
``<workload>.record.json`` per agent (default recording: the demo's,
tests/recordings/dev/demo-support-injection), for ``agentstory profiles export|bom
AGENT --record FILE``. Development recordings only (never the held-out set).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from models.exports.facts import profile_record
from streams.content import load_content
from streams.engine import EngineSettings, StoryEngine
from streams.replay import Replayer
from tests.eval.evaluate import load_recording

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "tests" / "recordings" / "dev" / "demo-support-injection"


def replay_records(folder: Path = DEMO) -> dict[str, dict[str, Any]]:
    if "heldout" in folder.parts or "held_out" in folder.parts:
        raise ValueError("held-out recordings are not for this")
    rec = load_recording(folder)
    replayer = Replayer(StoryEngine(load_content(), EngineSettings()))
    replayer.feed(rec.events)
    replayer.finish()
    return {agent: json.loads(json.dumps(profile_record(s.profile, s.inventory)))
            for agent, s in replayer.states.items()}


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for agent, record in replay_records(Path(argv[1]) if len(argv) > 1 else DEMO).items():
        path = out / f"{agent.rsplit('/', 1)[-1]}.record.json"
        path.write_text(json.dumps(record, indent=1))
        print(f"{agent}: phase {record['phase']} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
