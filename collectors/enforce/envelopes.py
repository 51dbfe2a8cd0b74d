"""Enforcer records → envelopes (pure). Kinds: ``enforce.would_block`` (audit: the
action went through) and ``enforce.blocked`` (enforce: connect/send refused with EPERM,
exec answered with SIGKILL), plus ``enforce.mode``, published when an agent's mode is
applied or changes, so the worker can say which mode applies and since when."""

from __future__ import annotations

from typing import Any

from collectors.enforce.decode import EnforceRecord
from streams.events import Envelope, Pod, Proc

__all__ = ["mode_envelope", "record_envelope"]

_REASON = {
    "connect": "destination not allowed by the agent's policy",
    "sendmsg": "destination not allowed by the agent's policy",
    "exec": "executable not allowed by the agent's policy",
}
_RESPONSE = {("enforce", "exec"): "SIGKILL", ("enforce", "connect"): "EPERM",
           ("enforce", "sendmsg"): "EPERM"}


def record_envelope(rec: EnforceRecord, *, node: str, pod: Pod | None, agent: str,
                    offset_ns: int) -> Envelope:
    kind = "enforce.blocked" if rec.mode == "enforce" else "enforce.would_block"
    data: dict[str, Any] = {
        "op": rec.op, "mode": rec.mode, "policy_agent": agent,
        "response": _RESPONSE.get((rec.mode, rec.op), "none (audit)"),
        "reason": _REASON[rec.op], "cgroup_id": rec.cgroup_id,
    }
    if rec.op == "exec":
        data["filename"] = rec.path
    else:
        data.update(dst_addr=rec.address, dst_port=rec.port, protocol=rec.protocol)
    if rec.suppressed:
        data["suppressed_before"] = rec.suppressed
    proc = Proc(pid=rec.pid, tid=rec.tid, comm=rec.comm,
                exe=rec.path if rec.op == "exec" else "")
    return Envelope(kind=kind, ts=rec.ts + offset_ns, node=node, source="kernel", data=data,
                    pod=pod, proc=proc)


def mode_envelope(agent: str, mode: str, since_ns: int, *, node: str, pods: int,
                  policy_digest: str) -> Envelope:
    """Which mode applies to an agent on this node, since when (epoch ns). It is about
    the agent, not one pod: no pod, and ``data.attribution.agent`` joins it to the
    agent's stream in the worker (streams.engine.agent_of_event)."""
    return Envelope(kind="enforce.mode", ts=since_ns, node=node, source="kernel",
                    data={"agent": agent, "mode": mode, "since_ns": since_ns,
                          "pods": pods, "policy_digest": policy_digest,
                          "attribution": {"agent": agent}})
