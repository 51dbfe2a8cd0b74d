"""Regenerate streams/ocsf_schema/detection_finding-1.5.0.json from the compiled OCSF schema.

The compiled OCSF 1.5.0 schema (the ``/1.5.0/export/schema`` export of the OCSF schema
server, Apache-2.0) is shipped inside the ``ocsf-json-schema`` wheel on PyPI. This script
takes that export, keeps the Detection Finding class and every object reachable from it,
and only what a validator needs (type, requirement, is_array, object_type, integer enums
with their captions, sibling, profile; object constraints; derived types), so the data
file stays small and the runtime needs no extra dependency.

Usage (not run in CI; the data file is committed)::

    python tests/streams/build_ocsf_schema.py                # pip-downloads the wheel
    python tests/streams/build_ocsf_schema.py --export 1.5.0.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

VERSION = "1.5.0"
CLASS = "detection_finding"
WHEEL = ("ocsf-json-schema", "1.2.0")
EXPORT_IN_WHEEL = f"ocsf_json_schema/ocsf/{VERSION}.json"
EXPORT_SHA256 = "e1630511cff5df7f67921b4785563a1a83c2ae1c2bcbe14029969846a29e441f"
OUT = Path(__file__).resolve().parents[2] / "streams" / "ocsf_schema" / f"{CLASS}-{VERSION}.json"

_TYPE_KEYS = ("type", "range", "regex", "max_len", "values")


def _export_from_wheel() -> bytes:
    """The compiled schema export, taken from the pinned wheel (pip's ordinary client)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp,
                        f"{WHEEL[0]}=={WHEEL[1]}"], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(EXPORT_IN_WHEEL)


def _attribute(attr: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": attr["type"], "requirement": attr["requirement"]}
    if attr.get("is_array"):
        out["is_array"] = True
    if attr.get("object_type"):
        out["object_type"] = attr["object_type"]
    # Integer enums (the *_id attributes) are closed lists; string "enums" are suggestions.
    if "enum" in attr and attr["type"] == "integer_t":
        out["enum"] = {k: v.get("caption", "")
                       for k, v in sorted(attr["enum"].items(), key=lambda kv: int(kv[0]))}
    if attr.get("sibling"):
        out["sibling"] = attr["sibling"]
    if attr.get("profile"):
        out["profile"] = attr["profile"]
    return out


def reduce(export: dict[str, Any]) -> dict[str, Any]:
    """The class and its reachable objects, reduced to what a validator walks."""
    if export["version"] != VERSION:
        raise SystemExit(f"export is OCSF {export['version']}, expected {VERSION}")
    cls = export["classes"][CLASS]
    objects = export["objects"]
    reachable: set[str] = set()
    todo = [cls["attributes"]]
    while todo:
        for attr in todo.pop().values():
            name = attr.get("object_type")
            if name and name not in reachable:
                reachable.add(name)
                todo.append(objects[name]["attributes"])
    reduced_objects = {}
    for name in sorted(reachable):
        obj = objects[name]
        entry: dict[str, Any] = {
            "attributes": {k: _attribute(v) for k, v in sorted(obj["attributes"].items())}}
        for kind, names in sorted((obj.get("constraints") or {}).items()):
            entry[kind] = sorted(names)
        reduced_objects[name] = entry
    return {
        "version": VERSION,
        "provenance": {
            "what": f"OCSF {VERSION} compiled schema, reduced to class {CLASS} and the "
                    "objects reachable from it",
            "source": f"{EXPORT_IN_WHEEL} in the {WHEEL[0]} {WHEEL[1]} wheel (PyPI), the "
                      f"OCSF schema server's /{VERSION}/export/schema",
            "source_sha256": EXPORT_SHA256,
            "license": "Apache-2.0 (OCSF schema; see LICENSE beside this file)",
            "generator": "tests/streams/build_ocsf_schema.py",
        },
        "types": {name: {k: t[k] for k in _TYPE_KEYS if k in t}
                  for name, t in sorted(export["types"].items())},
        "class": {
            "name": cls["name"], "uid": cls["uid"], "category_uid": cls["category_uid"],
            "profiles": sorted(cls.get("profiles") or []),
            "attributes": {k: _attribute(v) for k, v in sorted(cls["attributes"].items())},
        },
        "objects": reduced_objects,
    }


def dumps(data: dict[str, Any]) -> str:
    """Line-per-attribute JSON: small, and diffs read one attribute at a time."""
    def one(v: Any) -> str:
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))

    def attrs(a: dict[str, Any], indent: str) -> str:
        rows = [f'{indent}  {one(k)}:{one(v)}' for k, v in a.items()]
        return "{\n" + ",\n".join(rows) + f"\n{indent}}}"

    cls = data["class"]
    head = {k: v for k, v in cls.items() if k != "attributes"}
    cls_txt = one(head)[:-1] + ',"attributes":' + attrs(cls["attributes"], "  ") + "}"
    objs = []
    for name, obj in data["objects"].items():
        rest = "".join(f",{one(k)}:{one(v)}" for k, v in obj.items() if k != "attributes")
        objs.append(f'  {one(name)}:{{"attributes":{attrs(obj["attributes"], "  ")}{rest}}}')
    return ("{\n"
            f'"version":{one(data["version"])},\n'
            f'"provenance":{json.dumps(data["provenance"], indent=1)},\n'
            f'"types":{attrs(data["types"], "")},\n'
            f'"class":{cls_txt},\n'
            '"objects":{\n' + ",\n".join(objs) + "\n}\n}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, help="the compiled schema export (JSON)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    raw = args.export.read_bytes() if args.export else _export_from_wheel()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != EXPORT_SHA256:
        print(f"warning: export sha256 {digest} differs from the pinned {EXPORT_SHA256}",
              file=sys.stderr)
    text = dumps(reduce(json.loads(raw)))
    assert json.loads(text)  # the hand-made layout is valid JSON
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
