"""Agent profiles (models/): learn+score throughput on one core, bytes per profile,
memory for 10 / 1,000 / 10,000 agents.

Input: synthetic agents that emit wire envelopes in the collectors' shapes
(tests/models/gen.py): a stable support bot, a research agent fetching Zipf-distributed
domains, a coding agent (shells, git, compilers, a churning workspace), an ETL job
(S3-heavy). Each event goes through what the engine does: ``score`` at arrival, ``learn``,
``advance`` the watermark. An *update* is one observation scored and learned or one
quantity tallied (``observations(e)`` + ``quantities(e)``).

- throughput: one process (one core), all archetypes interleaved, 1 day of event time
  per agent; also the estimator core alone (``Novelty.score`` + ``learn`` on values
  already extracted) to show where the time goes.
- bytes: the JSON of ``AgentProfile.to_dict()`` (what the changelog carries) after one
  day and after three days; per event if written back once per frame of 200 events.
- memory: RSS growth of a fresh interpreter holding N profiles restored from those JSON
  documents (agent renamed, cycled over the population).

Run: .venv/bin/python -m tests.bench.bench_profile [--agents 40] [--days 1]
Goals (issue 10): >= 100k updates/s per core; <= 32 KB median per profile; 10,000 agents
in <= 1 GiB per worker.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from models.features import observations, quantities  # noqa: E402
from models.frozen import FrozenAllowlist  # noqa: E402
from models.novelty import Novelty  # noqa: E402
from models.profile import AgentProfile  # noqa: E402
from streams.events import Envelope  # noqa: E402
from tests.models.gen import (  # noqa: E402
    DAY,
    T0,
    coder_agent,
    connect_event,
    etl_agent,
    research_agent,
    support_agent,
)

ARCHETYPES = ("support", "research", "coder", "etl")


def events_of(kind: str, seed: int, days: int) -> Iterator[Envelope]:
    end = T0 + days * DAY
    if kind == "support":
        return support_agent(T0, end, every=(45 + seed % 30) * 1_000_000_000)
    if kind == "research":
        return research_agent(T0, end, n_values=20_000, s=1.0 + (seed % 5) / 10, seed=seed,
                              fetch_every=(30 + seed % 60) * 1_000_000_000)
    if kind == "coder":
        return coder_agent(T0, end, seed=seed)
    return etl_agent(T0, end, seed=seed, every=(2 + seed % 5) * 1_000_000_000)


def build(n_agents: int, days: int) -> tuple[list[AgentProfile], float, int, int]:
    streams = []
    for i in range(n_agents):
        kind = ARCHETYPES[i % len(ARCHETYPES)]
        streams.extend((e.ts, i, e) for e in events_of(kind, i, days))
    streams.sort(key=lambda t: (t[0], t[1]))
    updates = sum(len(observations(e)) + len(quantities(e)) for _, _, e in streams)
    profiles = [AgentProfile(f"ns{i}/Deployment/{ARCHETYPES[i % 4]}-{i}")
                for i in range(n_agents)]
    gc.collect()
    start = time.process_time()
    for _, i, e in streams:  # as the engine does: learn the scored observations
        p = profiles[i]
        scores = p.score(e)
        p.learn_observations(scores.observations, e.ts)
        p.advance(e.ts)
    took = time.process_time() - start
    return profiles, took, len(streams), updates


def core_only(values: list[tuple[str, int]]) -> float:
    nov = Novelty("net.domain")
    start = time.process_time()
    for v, ts in values:
        nov.score(v, ts)
        nov.learn(v, ts)
    return len(values) / (time.process_time() - start)


_CHILD = """
import gc, sys, orjson
from models.profile import AgentProfile
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
docs = [orjson.loads(line) for line in sys.stdin.buffer.read().splitlines()]
n = int(sys.argv[1])
texts = [orjson.dumps(d) for d in docs]
gc.collect()
before = rss()
held = []
for i in range(n):
    doc = orjson.loads(texts[i % len(texts)])
    doc["agent"] = f"ns{i}/Deployment/clone-{i}"
    held.append(AgentProfile.from_dict(doc))
gc.collect()
print(rss() - before)
"""


def memory(docs: list[dict[str, object]], n: int) -> int:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(n)], cwd=ROOT,
                         input=b"\n".join(orjson.dumps(d) for d in docs), capture_output=True,
                         check=True, env={"PYTHONPATH": str(ROOT)})
    return int(out.stdout)


THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.99)


def thresholds(zipf_s: float) -> tuple[float, dict[float, float], float]:
    """A research agent (Zipf(s) over 20,000 domains, one fetch per 30 s): 2 days learned
    (what scores >= 0.99 is flagged and not learned), then on day 3 the share of its
    connects whose net.domain novelty reaches each min_surprise; the frozen allowlist
    (learned 2 days) on the same connects; and the stream's own new-domain rate."""
    profile = AgentProfile("lab/Deployment/research")
    frozen = FrozenAllowlist("lab/Deployment/research", learning_ns=2 * DAY)
    hits = dict.fromkeys(THRESHOLDS, 0)
    n = fz = new = 0
    ever: set[str] = set()
    for e in research_agent(T0, T0 + 3 * DAY, s=zipf_s):
        scores = profile.score(e)
        d = scores.get("net.domain")
        if d is not None:
            if e.ts >= T0 + 2 * DAY:
                n += 1
                new += d.value not in ever
                for th in THRESHOLDS:
                    hits[th] += d.novel and d.judged and d.surprise >= th
                f = frozen.score(e).get("net.domain")
                fz += f is not None and f.novel and f.judged
            ever.add(d.value)
        if any(x.novel and x.judged and x.surprise >= 0.99 for x in scores.novelty):
            profile.protect(e.ts)
        else:
            profile.learn(e)
        frozen.learn(e)
        profile.advance(e.ts)
    return new / n, {th: h / n for th, h in hits.items()}, fz / n


def state_cost(profile: AgentProfile, n: int = 200) -> tuple[float, float]:
    """ms to write a profile back (to_dict + JSON) and to restore it (JSON + from_dict)."""
    start = time.process_time()
    for _ in range(n):
        text = orjson.dumps(profile.to_dict())
    mid = time.process_time()
    for _ in range(n):
        AgentProfile.from_dict(orjson.loads(text))
    end = time.process_time()
    return (mid - start) / n * 1000, (end - mid) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--agents", type=int, default=40)
    ap.add_argument("--days", type=int, default=1)
    args = ap.parse_args()

    profiles, took, n_events, updates = build(args.agents, args.days)
    sizes = sorted(len(orjson.dumps(p.to_dict())) for p in profiles)
    by_kind = {k: statistics.median(len(orjson.dumps(p.to_dict())) for i, p in
                                    enumerate(profiles) if i % 4 == ARCHETYPES.index(k))
               for k in ARCHETYPES}
    longer, _, _, _ = build(4, 3)
    sizes3 = sorted(len(orjson.dumps(p.to_dict())) for p in longer)

    domains = [(o.value, e.ts) for e in research_agent(T0, T0 + DAY, fetch_every=5 * 10**9)
               for o in observations(e) if o.dimension == "net.domain"]
    core = core_only(domains)

    table = {zs: thresholds(zs) for zs in (1.0, 1.2, 1.5, 2.0)}
    stable = AgentProfile("shop/Deployment/support")
    for e in support_agent(T0, T0 + 3 * DAY):
        stable.score(e)
        stable.learn(e)
        stable.advance(e.ts)
    stable_new = stable.score(connect_event(T0 + 3 * DAY, "paste.evil-exfil.net")).get(
        "net.domain")

    docs = [p.to_dict() for p in profiles]
    by_size = sorted(profiles, key=lambda p: len(orjson.dumps(p.to_dict())))
    costs = {name: state_cost(p) for name, p in (("median", by_size[len(by_size) // 2]),
                                                  ("max", by_size[-1]))}
    mem = {n: memory(docs, n) for n in (10, 1000, 10_000)}

    print("### Agent profiles (models/)\n")
    print(f"Command: `.venv/bin/python -m tests.bench.bench_profile --agents {args.agents} "
          f"--days {args.days}` ({args.agents} agents: support bot, Zipf research agent, "
          f"coding agent, ETL job; {n_events} events, {updates} updates = observations + "
          "quantities; per event `score` at arrival, `learn_observations` of the scored "
          "observations, `advance`; one core, CPU time)\n")
    print("| measure | value | goal |")
    print("|---|---|---|")
    print(f"| learn+score updates/s (one core) | {updates / took:,.0f} | ≥ 100,000 |")
    print(f"| learn+score events/s (one core) | {n_events / took:,.0f} | |")
    print(f"| estimator core only (Novelty score+learn on extracted values)/s | {core:,.0f} | |")
    print(f"| bytes per profile after {args.days} day, median / max | "
          f"{statistics.median(sizes):,.0f} / {sizes[-1]:,} | ≤ 32 KB median |")
    print("| median bytes per archetype | " + ", ".join(
        f"{k} {v:,.0f}" for k, v in by_kind.items()) + " | |")
    print(f"| bytes per profile after 3 days (one per archetype), median / max | "
          f"{statistics.median(sizes3):,.0f} / {sizes3[-1]:,} | |")
    print(f"| changelog bytes per event (median profile written once per 200-event frame) | "
          f"{statistics.median(sizes) / 200:,.0f} | |")
    for name, (dump_ms, load_ms) in costs.items():
        print(f"| write-back / restore of the {name} profile (to_dict+JSON / JSON+from_dict) | "
              f"{dump_ms:.2f} ms / {load_ms:.2f} ms | |")
    for n, b in mem.items():
        print(f"| RSS for {n:,} agents (restored from these profiles) | {b / 2**20:,.1f} MiB "
              f"({b / n / 1024:,.1f} KiB/agent) | {'≤ 1 GiB' if n == 10_000 else ''} |")
    print()
    print("Benign novelty on net.domain by the signal's `min_surprise` (share of the judged "
          "day's connects that would fire; research agent, Zipf(s) over 20,000 domains, one "
          "fetch per 30 s, 2 days learned, day 3 judged), next to the frozen exact-set "
          "allowlist on the same connects:\n")
    print("| Zipf s | new-domain rate (day 3) | " + " | ".join(
        f"min_surprise {th}" for th in THRESHOLDS) + " | frozen allowlist |")
    print("|---" * (len(THRESHOLDS) + 3) + "|")
    for zs, (rate, hits, fz) in table.items():
        print(f"| {zs} | {rate:.1%} | " + " | ".join(f"{hits[th]:.1%}" for th in THRESHOLDS)
              + f" | {fz:.1%} |")
    assert stable_new is not None
    print(f"\nA new domain for the stable support bot (3 days learned) scores surprise "
          f"{stable_new.surprise:.4f} (p_new {stable_new.p_new:.4f}).\n")
    print("Reading: the estimator-core line is the worst case (a research agent's domains, "
          "most of them new: bounded table, evictions into the Bloom sketch); the median "
          "profile is small, the research agents are the max — each of their three "
          "high-variety dimensions (net.domain, dns.name, tool-argument URL hosts) carries "
          "its own sketch of evicted values.")


if __name__ == "__main__":
    main()
