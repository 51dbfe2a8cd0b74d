"""What a story step says about its event: one sentence, and the evidence an analyst pivots on.

Pure. The sentence names the acting process by its own pid (never its parent's), what it
touched, and where; the evidence carries the OCSF objects (process, file, dst_endpoint,
api) and follows the evidence policy for tool arguments and results: ``keep`` ships them,
``hash`` replaces them by a digest, ``drop`` leaves them out — so a PII-exfiltration story
does not ship the PII to the SIEM.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from streams.events import Envelope

__all__ = ["EVIDENCE_POLICIES", "describe", "evidence"]

EVIDENCE_POLICIES = ("keep", "hash", "drop")
_MAX_TEXT = 200


def _cut(text: str, limit: int = _MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _who(event: Envelope) -> str:
    proc = event.proc
    if proc is None:
        return "a process"
    name = proc.comm or (proc.exe.rsplit("/", 1)[-1] if proc.exe else "pid")
    return f"{name} (pid {proc.pid})"


def _dst(data: dict[str, Any]) -> str:
    addr = f"{data.get('dst_addr', '?')}:{data.get('dst_port', '?')}"
    return f"{data['domain']} ({addr})" if data.get("domain") else addr


def _args_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def describe(event: Envelope, policy: str = "keep") -> str:
    """One sentence: who did what to what."""
    d, kind, who = event.data, event.kind, _who(event)
    if kind == "process.exec":
        argv = " ".join(str(a) for a in d.get("argv") or [d.get("filename", "?")])
        parent = f", child of {d['parent_comm']} (pid {event.proc.ppid})" if (
            d.get("parent_comm") and event.proc) else ""
        return _cut(f"{who} ran `{argv}`{parent}")
    if kind.startswith("file."):
        verb = {"file.open": "read" if d.get("access") == "read" else "opened for writing",
                "file.write": "wrote", "file.unlink": "deleted", "file.rename": "renamed",
                "file.chmod": "changed the mode of", "file.chown": "changed the owner of"
                }.get(kind, kind)
        extra = f" to {d['new_path']}" if d.get("new_path") else ""
        extra += f" ({d['mode_text']})" if d.get("mode_text") else ""
        return _cut(f"{who} {verb} {d.get('path', '?')}{extra}")
    if kind == "net.connect":
        outcome = f" ({d['error']})" if d.get("error") else ""
        return _cut(f"{who} connected to {_dst(d)}{outcome}")
    if kind == "net.close":
        return _cut(f"{who} sent {d.get('bytes_sent', 0)} bytes to {_dst(d)}")
    if kind == "net.dns":
        names = ", ".join(q.get("name", "?") for q in d.get("questions") or [])
        return _cut(f"{who} resolved {names}")
    if kind in ("process.setns", "process.unshare", "process.mount"):
        return _cut(f"{who} {kind.split('.')[1]} {d.get('nstype') or d.get('flags') or ''}"
                    f"{d.get('target', '')}")
    if kind == "llm.request":
        inj = d.get("injection") or {}
        where = inj.get("channel") or inj.get("source") or "its input"
        return _cut(f"{who} sent {d.get('provider', '?')}/{d.get('model', '?')} a request whose "
                    f"{where} carries instructions")
    if kind == "llm.tool_call":
        args = "" if policy == "drop" else f" with {_cut(_args_text(d.get('arguments', '')), 120)}"
        if policy == "hash":
            args = f" with arguments {_digest(d.get('arguments'))}"
        return _cut(f"model {d.get('model', '?')} called tool {d.get('tool', '?')}{args}")
    if kind == "mcp.call":
        args = "" if policy == "drop" else f" with {_cut(_args_text(d.get('arguments', '')), 120)}"
        if policy == "hash":
            args = f" with arguments {_digest(d.get('arguments'))}"
        side = "served" if d.get("direction") == "server" else "called"
        return _cut(f"{who} {side} MCP {d.get('method', 'tools/call')} "
                    f"{d.get('tool', '')}{args} at {d.get('host', '?')}")
    if kind == "mcp.result":
        return _cut(f"MCP result of {d.get('tool', '?')} from {d.get('host', '?')} carries "
                    "instructions")
    if kind == "cloud.api":
        principal = (d.get("principal") or {}).get("arn", "?")
        resources = ", ".join(r.get("arn") or r.get("name") or r.get("id", "") for r in
                              d.get("resources") or [] if isinstance(r, dict))
        return _cut(f"{principal} called {d.get('service')}:{d.get('action')}"
                    f"{' on ' + resources if resources else ''} ({d.get('outcome')})"
                    f" from {d.get('source_ip', '?')}")
    if kind in ("enforce.blocked", "enforce.would_block"):  # collectors/enforce
        refused = kind == "enforce.blocked"
        if d.get("op") == "exec":
            verb = "was killed at exec of" if refused else "ran, outside its policy,"
            return _cut(f"{who} {verb} {d.get('filename', '?')}")
        if refused:
            return _cut(f"{who} was refused a connection to {_dst(d)} "
                        f"({d.get('response', '?')})")
        return _cut(f"{who} connected, outside its policy, to {_dst(d)} (audit)")
    return _cut(f"{who} {kind}")


def _digest(value: Any) -> str:
    return "sha256:" + hashlib.sha256(_args_text(value).encode()).hexdigest()[:16]


def evidence(event: Envelope, policy: str = "keep") -> dict[str, Any]:
    """The OCSF objects of a step plus a few raw facts; tool content per ``policy``."""
    d, proc = event.data, event.proc
    out: dict[str, Any] = {}
    if proc is not None:
        process: dict[str, Any] = {"pid": proc.pid, "name": proc.comm or ""}
        exe = proc.exe or d.get("filename")
        if exe:
            process["file"] = {"path": exe, "name": str(exe).rsplit("/", 1)[-1], "type_id": 1}
        if d.get("argv"):
            process["cmd_line"] = _cut(" ".join(map(str, d["argv"])), 1024)
        if proc.ppid:
            process["parent_process"] = {"pid": proc.ppid,
                                         **({"name": d["parent_comm"]}
                                            if d.get("parent_comm") else {})}
        if proc.uid >= 0:
            process["user"] = {"uid": str(proc.uid)}
        out["process"] = process
    if event.family == "file" and d.get("path"):
        out["file"] = {"path": d["path"], "name": str(d["path"]).rsplit("/", 1)[-1],
                       "type_id": 1}
    if event.kind in ("net.connect", "net.close", "enforce.blocked",
                      "enforce.would_block") and d.get("dst_addr"):
        endpoint: dict[str, Any] = {"ip": d["dst_addr"], "port": d.get("dst_port")}
        if d.get("domain"):
            endpoint["domain"] = d["domain"]
        out["dst_endpoint"] = endpoint
    if event.kind == "cloud.api":
        out["api"] = {"operation": d.get("action", ""),
                      "service": {"name": d.get("service", "")}}
        facts = {k: d.get(k) for k in ("region", "source_ip", "outcome", "event_id",
                                        "attribution") if d.get(k)}
        facts["resources"] = d.get("resources") or []
        out["cloud"] = facts
    if event.kind in ("llm.tool_call", "mcp.call") and "arguments" in d and policy != "drop":
        out["arguments"] = (d["arguments"] if policy == "keep" else _digest(d["arguments"]))
    if d.get("injection"):
        inj = d["injection"]
        out["injection"] = {k: inj.get(k) for k in ("score", "indicators", "channel", "source")
                            if inj.get(k) is not None}
    return out
