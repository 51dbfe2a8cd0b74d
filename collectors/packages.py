"""Which AI packages a pod process has installed, from the package metadata in its own root.

Importing a package does not open its ``*.dist-info`` (so the kernel collector never sees
it); the metadata is still on the process's filesystem, reachable from the node through
``/proc/<pid>/root``. The site-packages folders are the ones the process mapped native
extensions from (``/proc/<pid>/maps``) plus the interpreter's own ``lib/pythonX.Y``; in
each, ``<name>-<version>.dist-info`` folders name what is installed. Nothing is imported
or executed; unreadable paths (another user's process, a gone pid) yield nothing.

The result is a ``process.packages`` event's data: ``{"packages": [{"name", "version",
"path"}]}`` (the inventory turns it into BOM library components).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["AI_PACKAGES", "ai_packages", "parse_dist_info", "site_dirs"]

# Distributions worth a BOM line: model SDKs, agent frameworks, MCP, vector stores, ML.
AI_PACKAGES = frozenset({
    "openai", "anthropic", "google-genai", "google-generativeai", "mistralai", "cohere",
    "groq", "boto3", "botocore", "litellm", "langchain", "langchain-core", "langchain-openai",
    "langgraph", "llama-index", "llama-index-core", "crewai", "autogen-agentchat",
    "pydantic-ai", "pydantic-ai-slim", "mcp", "fastmcp", "chromadb", "qdrant-client",
    "pinecone", "weaviate-client", "pymilvus", "transformers", "torch", "tiktoken",
    "sentence-transformers", "httpx",
})
_SITE = re.compile(r"^(.*/(?:site|dist)-packages)/")
_LIB_PY = re.compile(r"^(.*/lib/python3\.\d+)/")
_DIST = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._]*?)-(?P<version>[0-9][^-]*)\.dist-info$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def site_dirs(maps_text: str) -> list[str]:
    """site-/dist-packages folders of the mapped files of a ``/proc/<pid>/maps``.

    >>> site_dirs("7f0-7f1 r-xp 0 08:01 5 /app/.venv/lib/python3.11/site-packages/"
    ...           "pydantic_core/_core.so\\n7f2-7f3 r-xp 0 08:01 6 "
    ...           "/usr/lib/python3.11/lib-dynload/_ssl.so")
    ['/app/.venv/lib/python3.11/site-packages', '/usr/lib/python3.11/site-packages']
    """
    out: list[str] = []
    for line in maps_text.splitlines():
        parts = line.split(maxsplit=5)
        path = parts[5] if len(parts) == 6 else ""
        for pattern, suffix in ((_SITE, ""), (_LIB_PY, "/site-packages")):
            m = pattern.match(path)
            if m and m.group(1) + suffix not in out:
                out.append(m.group(1) + suffix)
    return out


def parse_dist_info(names: Iterable[str], wanted: frozenset[str] = AI_PACKAGES
                    ) -> dict[str, str]:
    """``{normalized name: version}`` of the wanted distributions among folder names.

    >>> parse_dist_info(["openai-1.99.1.dist-info", "six-1.16.0.dist-info", "x.py"])
    {'openai': '1.99.1'}
    """
    found: dict[str, str] = {}
    for entry in names:
        m = _DIST.match(entry)
        if m and _norm(m.group("name")) in wanted:
            found[_norm(m.group("name"))] = m.group("version")
    return found


def ai_packages(pid: int, *, proc: str = "/proc", wanted: frozenset[str] = AI_PACKAGES
                ) -> list[dict[str, str]]:
    """The wanted distributions installed where process ``pid`` loads its packages from."""
    root = Path(proc) / str(pid) / "root"
    try:
        maps = (Path(proc) / str(pid) / "maps").read_text()
    except OSError:
        return []
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for site in site_dirs(maps):
        try:
            entries = os.listdir(root / site.lstrip("/"))
        except OSError:
            continue
        for name, ver in sorted(parse_dist_info(entries, wanted).items()):
            if name not in seen:
                seen.add(name)
                out.append({"name": name, "version": ver, "path": site})
    return out
