"""``./taskw eval``: replay every recording through the story engine, write EVALUATION.md.

For each engine variant (:func:`build_variants`: the full join, each layer alone, the
frozen allowlist) and each recording under tests/recordings/{dev,heldout}, the events are
fed in the order a live system reads them (the recording's message order: kernel and L7
at once, CloudTrail after its delivery delay) to ``Replayer(StoryEngine(...))``. Then:

- per attack: detected (a story on the labelled pod holds at least one labelled step),
  stories per attack, time to detect (event time from the first malicious event to the
  first story version holding a malicious step), step precision (story steps that are
  labelled events) and recall (labelled steps found in the stories), causal links right
  (label steps marked ``link: causal`` whose story step says ``link == "causal"``);
- per benign agent: false stories (stories on its pods holding no labelled step) per
  agent-hour of event time.

Labelled steps are resolved to events by their predicates (kind + ``where``) over the
recording; a story step matches an event by (kind, ts) on the same pod.

Nothing here sets a threshold or a signal; the sweep only varies a setting the engine
exposes, if it exposes one.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streams.events import Envelope, decode_frame

ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = ROOT / "tests" / "recordings"
HOUR_NS = 3600 * 1_000_000_000

__all__ = ["Recording", "Variant", "build_variants", "evaluate", "load_recordings",
           "match_event", "render", "resolve_steps", "score_recording"]


# -- recordings and labels ---------------------------------------------------------------
@dataclass
class Recording:
    name: str
    split: str
    events: list[Envelope]
    labels: dict[str, Any]


def load_recording(folder: Path) -> Recording:
    events: list[Envelope] = []
    with gzip.open(folder / "events.jsonl.gz", "rb") as fh:
        for line in fh:
            if line.strip():
                events.extend(decode_frame(orjson.dumps(orjson.loads(line)["frame"])).events)
    labels = json.loads((folder / "labels.json").read_text())
    return Recording(folder.name, labels.get("split", folder.parent.name), events, labels)


def load_recordings(root: Path = RECORDINGS, splits: Iterable[str] = ("dev", "heldout"),
                    only: Iterable[str] = ()) -> list[Recording]:
    wanted = set(only)
    out = []
    for split in splits:
        for folder in sorted((root / split).glob("*/")):
            if (folder / "labels.json").exists() and (not wanted or folder.name in wanted):
                out.append(load_recording(folder))
    return out


def _get(doc: Any, path: str) -> Any:
    cur = doc
    for part in path.split("."):
        if isinstance(cur, dict):
            cur = cur.get(part)
        else:
            return None
    return cur


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _test(value: Any, cond: Any) -> bool:
    if not isinstance(cond, dict):
        if isinstance(value, list):
            return cond in value
        return value == cond
    if value is None:
        return False
    for op, arg in cond.items():
        if op == "contains" and arg not in _text(value):
            return False
        if op == "startswith" and not _text(value).startswith(arg):
            return False
        if op == "endswith" and not _text(value).endswith(arg):
            return False
        if op == "re" and not re.search(arg, _text(value)):
            return False
        if op == "in" and value not in arg:
            return False
        if op == "gte" and not (isinstance(value, int | float) and value >= arg):
            return False
    return True


def match_event(event: dict[str, Any], step: dict[str, Any]) -> bool:
    """Whether an envelope (as a dict) is an instance of a labelled step."""
    if event.get("kind") != step["kind"]:
        return False
    return all(_test(_get(event, path), cond) for path, cond in step.get("where", {}).items())


def resolve_steps(rec: Recording, attack: dict[str, Any]) -> list[set[tuple[str, int]]]:
    """For each labelled step, the (kind, ts) of the events on the attack's pod it names."""
    uid = attack["pod"]["uid"]
    out: list[set[tuple[str, int]]] = [set() for _ in attack["steps"]]
    for env in rec.events:
        if env.pod is None or env.pod.uid != uid:
            continue
        doc = env.to_dict()
        for i, step in enumerate(attack["steps"]):
            if match_event(doc, step):
                out[i].add((env.kind, env.ts))
    return out


# -- engine variants -----------------------------------------------------------------------
@dataclass
class Variant:
    name: str
    make: Callable[[], Any] | None  # → Replayer, or None when unavailable
    sources: frozenset[str] = frozenset({"kernel", "l7", "cloud"})
    note: str = ""


def _engine_module() -> Any:
    """streams.engine (the brain), or streams.detect before it landed."""
    try:
        import streams.engine as module
    except ImportError:
        import streams.detect as module  # type: ignore[no-redef]
    return module


def load_eval_content(threshold: int | None = None) -> Any:
    """The detection content as shipped; ``threshold`` replaces the incident threshold
    (the sweep), when the content has one."""
    from streams.content import load_content

    content = load_content()
    rules = getattr(content, "incidents", None)
    if threshold is not None and rules is not None and hasattr(rules, "threshold"):
        content = dataclasses.replace(content, incidents=dataclasses.replace(
            rules, threshold=threshold))
    return content


def build_variants(settings_overrides: dict[str, Any] | None = None, *,
                   threshold: int | None = None) -> list[Variant]:
    """Every engine the evaluation compares, built in ONE place.

    ``full``: the engine on all three layers. ``kernel-only`` / ``l7-only`` /
    ``cloud-only``: the same engine fed one layer. ``frozen-allowlist``: the static
    baseline (node-agent / seccomp / TracingPolicy style: same generalization, same
    learning span, same story aggregation, then frozen), see :func:`_frozen_variant`.
    ``settings_overrides`` sets EngineSettings fields; ``threshold`` the incident
    threshold of the content.
    """
    from streams.replay import Replayer

    module = _engine_module()
    overrides = dict(settings_overrides or {})
    known = {f.name for f in dataclasses.fields(module.EngineSettings)}
    settings = module.EngineSettings(**{k: v for k, v in overrides.items() if k in known})

    def full() -> Any:
        return Replayer(module.StoryEngine(load_eval_content(threshold), settings))

    variants = [Variant("full", full)]
    for layer in ("kernel", "l7", "cloud"):
        variants.append(Variant(f"{layer}-only", full, frozenset({layer})))
    variants.append(_frozen_variant(settings))
    return variants


def _frozen_variant(settings: Any) -> Variant:
    """The frozen allowlist: the same engine, content and story aggregation, whose
    per-agent baseline is ``models.frozen.FrozenAllowlist`` (EngineSettings.baseline)."""
    from streams.replay import Replayer

    module = _engine_module()
    frozen = dataclasses.replace(settings, baseline="frozen")
    return Variant("frozen-allowlist",
                   lambda: Replayer(module.StoryEngine(load_eval_content(), frozen)))


# -- scoring -------------------------------------------------------------------------------
@dataclass
class AttackResult:
    recording: str
    split: str
    attack: str
    category: str
    detected: bool
    stories: int
    ttd_s: float | None
    precision: float | None
    recall: float | None
    causal_right: str
    unresolved_steps: list[str] = field(default_factory=list)


@dataclass
class BenignResult:
    recording: str
    split: str
    agent: str
    hours: float
    false_stories: int


def _causal(link: Any) -> bool:
    """A step's link is causal: ``"causal"`` or ``{"causal": true, ...}``."""
    if isinstance(link, dict):
        return bool(link.get("causal")) or link.get("type") == "causal"
    return link == "causal"


def _uid(story: Any) -> str:
    pod = getattr(story, "pod", None)
    if isinstance(pod, dict):
        return str(pod.get("uid", ""))
    return str(getattr(pod, "uid", ""))


def _steps(story: Any) -> list[Any]:
    return list(getattr(story, "steps", ()) or ())


def _step_key(step: Any) -> tuple[str, int]:
    return (str(getattr(step, "kind", "")), int(getattr(step, "ts", 0)))


def score_recording(rec: Recording, versions: list[Any]) -> tuple[list[AttackResult],
                                                                  list[BenignResult]]:
    from streams.replay import Replayer

    latest = Replayer.latest(versions)
    attacks: list[AttackResult] = []
    malicious_by_pod: dict[str, set[tuple[str, int]]] = {}
    for attack in rec.labels.get("attacks", []):
        uid = attack["pod"]["uid"]
        resolved = resolve_steps(rec, attack)
        bad = set().union(*resolved) if resolved else set()
        malicious_by_pod.setdefault(uid, set()).update(bad)
        ours = [s for s in latest if _uid(s) == uid and
                any(_step_key(st) in bad for st in _steps(s))]
        first_bad = min((ts for _k, ts in bad), default=None)
        ttd = None
        for version in versions:
            if _uid(version) == uid and any(_step_key(st) in bad for st in _steps(version)):
                if first_bad is not None:
                    ttd = (max(st.ts for st in _steps(version)) - first_bad) / 1e9
                break
        story_steps = [st for s in ours for st in _steps(s)]
        precision = (sum(_step_key(st) in bad for st in story_steps) / len(story_steps)
                     if story_steps else None)
        found_keys = {_step_key(st) for st in story_steps}
        live = [i for i, r in enumerate(resolved) if r]
        recall = (sum(bool(resolved[i] & found_keys) for i in live) / len(live)
                  if live and ours else (0.0 if live else None))
        causal_total = causal_ok = 0
        has_links = any(hasattr(st, "link") for st in story_steps) or not story_steps
        for i, step in enumerate(attack["steps"]):
            if step.get("link") != "causal":
                continue
            causal_total += 1
            if any(_step_key(st) in resolved[i] and _causal(getattr(st, "link", None))
                   for st in story_steps):
                causal_ok += 1
        causal = (f"{causal_ok}/{causal_total}" if has_links else
                  f"n/a (no link field; {causal_total} expected)") if causal_total else "-"
        attacks.append(AttackResult(
            rec.name, rec.split, attack["id"], attack.get("category", ""), bool(ours),
            len(ours), ttd, precision, recall, causal,
            [attack["steps"][i]["name"] for i, r in enumerate(resolved) if not r]))
    benign: list[BenignResult] = []
    for ref in rec.labels.get("benign", []):
        uid = ref["uid"]
        ts = [e.ts for e in rec.events if e.pod is not None and e.pod.uid == uid]
        hours = (max(ts) - min(ts)) / HOUR_NS if ts else 0.0
        bad = malicious_by_pod.get(uid, set())
        false = [s for s in latest if _uid(s) == uid and
                 not any(_step_key(st) in bad for st in _steps(s))]
        benign.append(BenignResult(rec.name, rec.split, ref["agent"], hours, len(false)))
    return attacks, benign


def replay(variant: Variant, rec: Recording) -> list[Any]:
    assert variant.make is not None
    replayer = variant.make()
    versions = list(replayer.feed(e for e in rec.events if e.source in variant.sources))
    finish = getattr(replayer, "finish", None)  # watermarks past the end: final versions
    if finish is not None:
        versions += list(finish())
    return versions


def evaluate(recordings: list[Recording], variants: list[Variant]
             ) -> dict[str, tuple[list[AttackResult], list[BenignResult]]]:
    out: dict[str, tuple[list[AttackResult], list[BenignResult]]] = {}
    for variant in variants:
        if variant.make is None:
            continue
        attacks: list[AttackResult] = []
        benign: list[BenignResult] = []
        for rec in recordings:
            a, b = score_recording(rec, replay(variant, rec))
            attacks += a
            benign += b
        out[variant.name] = (attacks, benign)
    return out


def sweep_default() -> int | None:
    """The content's incident threshold (what the sweep varies), if it has one."""
    rules = getattr(load_eval_content(), "incidents", None)
    value = getattr(rules, "threshold", None)
    return int(value) if isinstance(value, int | float) else None


# -- the report ------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def summary(attacks: list[AttackResult], benign: list[BenignResult]) -> dict[str, Any]:
    hours = sum(b.hours for b in benign)
    false = sum(b.false_stories for b in benign)
    return {"attacks": len(attacks), "detected": sum(a.detected for a in attacks),
            "one_story": sum(a.stories == 1 for a in attacks),
            "benign_hours": hours, "false_stories": false,
            "false_per_hour": false / hours if hours else None}


def render(results: dict[str, tuple[list[AttackResult], list[BenignResult]]],
           variants: list[Variant], sweep: list[tuple[str, Any, dict[str, Any]]],
           meta: dict[str, Any]) -> str:
    lines = ["# EVALUATION", "",
             "Written by `./taskw eval` (tests/eval/evaluate.py) from the recordings under "
             "tests/recordings: every recording replayed through the story engine "
             "(`streams.replay.Replayer`), per engine variant. Development and held-out "
             "columns are separate; the held-out recordings were made by a helper who writes "
             "no signals, their labels' hashes are in tests/recordings/heldout/LABELS.sha256, "
             "and nobody tuning reads them.", "",
             f"Recordings: {meta['recordings']}; engine `{meta['engine']}`, settings: "
             f"{meta['settings']}; run took {meta['seconds']:.0f} s.", "",
             "How to read: an attack is *detected* when a story on the labelled pod holds "
             "at least one labelled step; *stories* counts such stories (the target is one); "
             "*time to detect* is event time from the first labelled event to the first "
             "story version holding one; *step precision* is the share of those stories' "
             "steps that are labelled events, *step recall* the share of labelled steps "
             "found in them; *causal links right* counts labelled `link: causal` steps whose "
             "story step carries a causal link. A *false story* is a story on a benign "
             "agent's pod (including an attacked pod's own history) that holds no labelled "
             "step; agent-hours are the event-time span of the pod's events. Events are "
             "identified by (kind, event time) on the pod; CloudTrail's one-second precision "
             "makes calls of the same second one event. Each layer alone is the same engine "
             "fed only that layer's events.", ""]
    lines += ["## Summary", "",
              "| variant | split | attacks detected | as one story | false stories | "
              "benign agent-hours | false stories per agent-hour |",
              "|---|---|---|---|---|---|---|"]
    for v in variants:
        if v.name not in results:
            lines.append(f"| {v.name} | - | {v.note} | | | | |")
            continue
        attacks, benign = results[v.name]
        for split in ("dev", "heldout"):
            s = summary([a for a in attacks if a.split == split],
                        [b for b in benign if b.split == split])
            if not s["attacks"] and not s["benign_hours"]:
                continue
            lines.append(f"| {v.name} | {split} | {s['detected']}/{s['attacks']} | "
                         f"{s['one_story']}/{s['attacks']} | {s['false_stories']} | "
                         f"{s['benign_hours']:.1f} | {_fmt(s['false_per_hour'], '.3f')} |")
    lines += ["", "## Per attack (full engine)", "",
              "| split | recording | category | detected | stories | time to detect (s) | "
              "step precision | step recall | causal links right | unresolved label steps |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for a in results.get("full", ([], []))[0]:
        name = a.recording if a.split == "dev" else "(held out)"
        lines.append(f"| {a.split} | {name} | {a.category if a.split == 'dev' else '-'} | "
                     f"{'yes' if a.detected else 'NO'} | {a.stories} | {_fmt(a.ttd_s, '.1f')} | "
                     f"{_fmt(a.precision)} | {_fmt(a.recall)} | {a.causal_right} | "
                     f"{len(a.unresolved_steps)} |")
    lines += ["", "## Per attack and layer (detected / stories)", "",
              "| split | recording | " + " | ".join(v.name for v in variants
                                                    if v.name in results) + " |",
              "|---|---|" + "---|" * sum(v.name in results for v in variants)]
    full = results.get("full", ([], []))[0]
    for i, a in enumerate(full):
        cells = []
        for v in variants:
            if v.name in results:
                other = results[v.name][0][i]
                cells.append(f"{'yes' if other.detected else 'no'} / {other.stories}")
        name = a.recording if a.split == "dev" else "(held out)"
        lines.append(f"| {a.split} | {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Per benign agent (full engine)", "",
              "| split | recording | agent | agent-hours | false stories | per agent-hour |",
              "|---|---|---|---|---|---|"]
    for b in results.get("full", ([], []))[1]:
        name = b.recording if b.split == "dev" else "(held out)"
        agent = b.agent if b.split == "dev" else "-"
        lines.append(f"| {b.split} | {name} | {agent} | {b.hours:.2f} | {b.false_stories} | "
                     f"{_fmt(b.false_stories / b.hours if b.hours else None, '.3f')} |")
    lines += ["", "## Threshold sweep", ""]
    if not sweep:
        lines.append("The detection content exposes no incident threshold: no sweep; one "
                     "operating point only.")
    else:
        lines += ["| setting | value | split | detected | false stories per agent-hour |",
                  "|---|---|---|---|---|"]
        for name, value, by_split in sweep:
            for split, s in by_split.items():
                lines.append(f"| {name} | {value} | {split} | "
                             f"{s['detected']}/{s['attacks']} | "
                             f"{_fmt(s['false_per_hour'], '.3f')} |")
    lines += ["", "## Targets (issue 12)", "",
              "- every attack detected as one story with the right pod and chain;",
              "- at least 10 times fewer false stories per benign agent-hour than the "
              "frozen allowlist;",
              "- no single layer matching the join.", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "EVALUATION.md"))
    parser.add_argument("--recordings", default=str(RECORDINGS))
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--no-sweep", action="store_true")
    args = parser.parse_args(argv)
    started = time.monotonic()
    recordings = load_recordings(Path(args.recordings), only=args.only)
    if not recordings:
        print(f"no recordings under {args.recordings}", file=sys.stderr)
        return 2
    variants = build_variants()
    results = evaluate(recordings, variants)
    sweep: list[tuple[str, Any, dict[str, Any]]] = []
    default = None if args.no_sweep else sweep_default()
    if default:
        for factor in (0.5, 1.0, 2.0):
            value = int(default * factor)
            if factor == 1.0:  # the operating point: the full variant's own results
                a, b = results["full"]
            else:
                a, b = evaluate(recordings, [build_variants(threshold=value)[0]])["full"]
            sweep.append(("incident threshold", value, {split: summary(
                [x for x in a if x.split == split], [x for x in b if x.split == split])
                for split in ("dev", "heldout")}))
    meta = {"recordings": f"{sum(r.split == 'dev' for r in recordings)} development, "
                          f"{sum(r.split == 'heldout' for r in recordings)} held out",
            "settings": dataclasses.asdict(_engine_module().EngineSettings()),
            "engine": getattr(build_variants()[0].make().engine, "version", "") or "-",
            "seconds": time.monotonic() - started}
    Path(args.out).write_text(render(results, variants, sweep, meta))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
