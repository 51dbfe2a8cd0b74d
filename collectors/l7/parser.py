"""Plaintext chunks of one connection in, redacted L7 events out.

The capture half (uprobes on libssl) hands every chunk it sees to :meth:`L7Parser.feed`
with a connection key and a direction. This module is the seam: it owns per-connection
state (two HTTP reassemblers, the FIFO of requests awaiting responses, MCP ids in
flight) and turns whole HTTP messages into ``http.*``, ``llm.*`` and ``mcp.*`` events.
It imports no bcc and no Kafka so it is tested and benchmarked on bytes alone.

Request or response is read from the bytes, not the direction: an agent's client
writes requests (egress), an MCP server inside the pod reads them (ingress).
Every event passes through the :class:`~collectors.l7.redact.Redactor` last, so no
code path can emit a credential the rules know.

Event data (``L7Event.data``; ``ts`` is the time of the chunk that completed the message):

- ``http.request``: method, host, path, content_type, body_size (kept, decoded),
  wire_body_size, truncated, headers (credential values replaced).
- ``http.response``: status, content_type, body_size, wire_body_size, truncated,
  headers, and method/host/path of the request it answers (FIFO per connection).
- ``llm.request``: provider, api (chat.completions | responses | messages |
  generate_content | ollama.chat | ollama.generate | converse | converse-stream |
  invoke-model | invoke-model-with-response-stream), wire, model (Bedrock: from the
  path), stream, messages [{role, channel, content, tool_calls?, tool_call_id?,
  mcp_server?, is_error?, truncated?}], tools (offered names; provider-side MCP as
  ``mcp:<server>``), host, path, injection {score, indicators, techniques, flagged, source,
  channel, scored}, system_prompt_hash / tools_hash (16 hex of sha256; absent when there
  is none), mcp_servers [{name, url}] (provider-side MCP offered), partial and truncated
  (a body cut by a cap: what it kept, values cut, keys whole), messages_total (only when
  older messages were elided by ``ContentPolicy.max_messages``).
  ``channel`` is one of system | user | assistant | tool_result | mcp_result | retrieved
  (see :mod:`collectors.l7.inputs`); only tool_result, mcp_result, retrieved and
  ``<document>``-style external text quoted in user turns are scored (every user turn
  with ``score_user_turns``). The system prompt and tool definitions never are.
- ``llm.count_tokens``: provider, api, wire, model, messages_total, tools, host, path
  (token-counting calls: Anthropic count_tokens, Gemini countTokens, OpenAI
  responses/input_tokens, Bedrock count-tokens).
- ``llm.response``: provider, api, model, stream, status, text, finish_reason, usage,
  tool_calls (names), host, path, error (when the provider sent one), truncated,
  injection (only when provider-run tools — web search/fetch, provider-side MCP — fed
  text to the model within this turn; channel mcp_result | retrieved | tool_result).
- ``llm.tool_call``: provider, api, model, tool, arguments (parsed JSON when valid, else
  the string; capped by structure), call_id, host, mcp_server (provider-side MCP),
  server_tool (true when the provider ran it), truncated. One per call, streamed deltas
  already joined.
- ``mcp.call``: method, id, tool/arguments (tools/call), prompt (prompts/get), uri,
  client/protocol_version (initialize), notification, direction (client | server), host,
  path, truncated.
- ``mcp.result``: id, method, tool (matched by JSON-RPC id), is_error, error, content
  (text the tool returned, per policy), tools (tools/list), tools_hash and
  tool_definitions_injection (tools/list: descriptions are hashed and scored apart, never
  as ``injection``), server (initialize), injection {…, channel "mcp_result"}, host,
  path, truncated.

Contents follow the :class:`ContentPolicy` (``prompts``: messages and response text;
``tool_arguments``; ``tool_results``), after injection scoring saw the original text.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import orjson

from collectors.l7 import h2, inputs, llm, mcp
from collectors.l7.http import HttpError, HttpMessage, HttpStream
from collectors.l7.injection import InjectionScorer, default_scorer
from collectors.l7.policy import ContentPolicy
from collectors.l7.redact import Redactor

__all__ = ["KINDS", "ContentPolicy", "L7Event", "L7Parser"]

KINDS = frozenset(
    {
        "http.request",
        "http.response",
        "llm.request",
        "llm.response",
        "llm.tool_call",
        "llm.count_tokens",
        "mcp.call",
        "mcp.result",
    }
)
_NO_INJECTION: dict[str, Any] = {"score": 0.0, "indicators": [], "techniques": [], "flagged": False}
# Wrappers that agents and RAG frameworks put around external text quoted in a user turn.
_EXTERNAL_OPEN = re.compile(
    r"<(documents?|search_results?|web_?page|fetched[\w-]*|retrieved[\w-]*|email|attachment)"
    r"\b[^>]{0,200}>",
    re.I,
)
_MAX_EXTERNAL = 64  # wrappers looked at per user turn


def external_spans(text: str) -> list[str]:
    """External content quoted in a user turn (``<document>…</document>`` and kin).

    Each opening tag is matched to its closing tag with ``str.find`` (linear), at most
    :data:`_MAX_EXTERNAL` of them: a turn full of unclosed tags costs no regex
    backtracking. Nested wrappers give the outer span only.
    """
    if "<" not in text:
        return []
    lower = text.lower()
    spans: list[str] = []
    pos = 0
    for _ in range(_MAX_EXTERNAL):
        m = _EXTERNAL_OPEN.search(text, pos)
        if m is None:
            break
        end = lower.find(f"</{m.group(1).lower()}", m.end())
        if end < 0:
            pos = m.end()
            continue
        if text[m.end() : end].strip():
            spans.append(text[m.end() : end])
        pos = end
    return spans


_JSON_TYPES = ("application/json", "text/json")


@dataclass(frozen=True, slots=True)
class L7Event:
    """One parsed L7 event; ``data`` is already redacted and JSON-serializable."""

    kind: str
    ts: int
    data: dict[str, Any]


@dataclass(slots=True)
class _Pending:
    """A request waiting for its response (FIFO per connection, HTTP/1.1 order)."""

    method: str
    host: str
    path: str
    llm: llm.LlmCall | None = None
    mcp: bool = False


@dataclass(slots=True)
class _Conn:
    streams: dict[str, HttpStream] = field(default_factory=dict)
    pending: deque[_Pending] = field(default_factory=deque)
    # (origin of the call, json-rpc id) -> (method, tool); origin "c" client, "s" server.
    rpc: OrderedDict[tuple[str, str], tuple[str, str]] = field(default_factory=OrderedDict)
    desync: set[str] = field(default_factory=set)
    last_ts: int = 0
    fresh: bool = True  # no byte seen yet: the first one tells HTTP/1 from HTTP/2
    h2: h2.H2Connection | None = None
    h2_skip: bool = False  # HTTP/2 joined mid-stream: HPACK state unknown, skipped
    h2_streams: OrderedDict[int, _Conn] = field(default_factory=OrderedDict)

    def head_method(self) -> str:
        """Method of the oldest request still waiting (what the next response answers)."""
        return self.pending[0].method if self.pending else ""


class L7Parser:
    """Per-connection HTTP/1.1 reassembly and LLM/MCP parsing into :class:`L7Event`.

    ``max_body`` caps each message body kept in memory (the rest is counted in
    ``stats["truncated"]`` and the event still goes out with what was kept);
    ``max_conns`` bounds connection state (least recently fed evicted, counted).
    """

    def __init__(
        self,
        policy: ContentPolicy | None = None,
        *,
        max_body: int = 1 << 20,
        max_conns: int = 4096,
        max_pending: int = 64,
        scorer: InjectionScorer | None = None,
        score_user_turns: bool = False,
    ) -> None:
        self.policy = policy or ContentPolicy()
        self.score_user_turns = score_user_turns
        self.max_body = max_body
        self.max_conns = max_conns
        self.max_pending = max_pending
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "bytes",
                "messages",
                "requests",
                "responses",
                "events",
                "parse_errors",
                "truncated",
                "decode_errors",
                "desync_bytes",
                "opaque_bytes",
                "unmatched_responses",
                "evicted_conns",
                "llm_calls",
                "mcp_messages",
                "internal_errors",
                "salvaged",
                "messages_elided",
                "h2_conns",
                "h2_messages",
                "h2_errors",
                "h2_midstream_conns",
                "h2_skipped_bytes",
            ),
            0,
        )
        self.redactor = Redactor(self.policy, counts=self.stats)
        self.scorer = scorer or default_scorer()
        self._conns: OrderedDict[Hashable, _Conn] = OrderedDict()

    # -- public API ---------------------------------------------------------------------

    def feed(self, conn: Hashable, direction: str, data: bytes, ts_ns: int) -> list[L7Event]:
        """Take one chunk; return the events it completed. Never raises on input."""
        self.stats["bytes"] += len(data)
        state = self._conn(conn)
        state.last_ts = max(state.last_ts, ts_ns)
        if state.fresh:
            state.fresh = False
            if len(data) >= 4 and h2.PREFACE.startswith(data[:24]):
                state.h2 = h2.H2Connection(direction, max_body=self.max_body)
                self.stats["h2_conns"] += 1
            elif not _starts_message(data) and h2.looks_like_frames(data):
                state.h2_skip = True
                self.stats["h2_midstream_conns"] += 1
        if state.h2 is not None:
            return self._h2_feed(state, direction, data, ts_ns)
        if state.h2_skip:
            self.stats["h2_skipped_bytes"] += len(data)
            return []
        if direction in state.desync:
            if not _starts_message(data):
                self.stats["desync_bytes"] += len(data)
                return []
            state.desync.discard(direction)
        stream = state.streams.get(direction)
        if stream is None:
            stream = HttpStream(
                self.max_body,
                response_method=state.head_method,
            )
            state.streams[direction] = stream
        before = stream.opaque_bytes
        try:
            messages = stream.feed(data, ts_ns)
        except HttpError as exc:
            self._reset(state, direction)
            return self._events(state, exc.completed)
        except Exception:  # a reassembly bug must not stop capture; counted apart
            self.stats["internal_errors"] += 1
            self._reset(state, direction, count=False)
            return []
        self.stats["opaque_bytes"] += stream.opaque_bytes - before
        return self._events(state, messages)

    def close(self, conn: Hashable) -> list[L7Event]:
        """The connection ended: flush messages delimited by the close itself."""
        state = self._conns.pop(conn, None)
        if state is None:
            return []
        messages: list[HttpMessage] = []
        for stream in state.streams.values():
            messages.extend(stream.close(state.last_ts))
        return self._events(state, messages)

    # -- HTTP/2 -------------------------------------------------------------------------

    def _h2_feed(self, state: _Conn, direction: str, data: bytes, ts: int) -> list[L7Event]:
        """Frames → messages per stream → the same events as HTTP/1, each stream paired
        on its own (a sub-state per stream id), with ``version`` and ``stream``."""
        assert state.h2 is not None
        try:
            done = state.h2.feed(direction, data, ts)
        except h2.H2Error:
            self.stats["h2_errors"] += 1
            state.h2, state.h2_skip = None, True  # lost step: skip, never guess
            return []
        except Exception:  # a library bug must not stop capture; counted apart
            self.stats["internal_errors"] += 1
            state.h2, state.h2_skip = None, True
            return []
        out: list[L7Event] = []
        for sid, msg in done:
            sub = state.h2_streams.get(sid)
            if sub is None:
                sub = state.h2_streams[sid] = _Conn(fresh=False)
                while len(state.h2_streams) > 1024:
                    state.h2_streams.popitem(last=False)
            events = self._events(sub, [msg])
            if not msg.is_request:
                state.h2_streams.pop(sid, None)
            self.stats["h2_messages"] += 1
            for event in events:
                if event.kind.startswith("http."):
                    event.data["version"] = "2"
                    event.data["stream"] = sid
                    if msg.content_type.startswith("application/grpc"):
                        path = event.data.get("path", "")
                        event.data["grpc"] = h2.grpc_summary(
                            path, msg.body, wire_complete=not msg.truncated)
                        status = msg.header("grpc-status")
                        if status:
                            event.data["grpc"]["status"] = int(status) if status.isdigit() \
                                else status
            out.extend(events)
        return out

    # -- connection state ---------------------------------------------------------------

    def _conn(self, key: Hashable) -> _Conn:
        state = self._conns.get(key)
        if state is None:
            state = self._conns[key] = _Conn()
            if len(self._conns) > self.max_conns:
                self._conns.popitem(last=False)
                self.stats["evicted_conns"] += 1
        else:
            self._conns.move_to_end(key)
        return state

    def _reset(self, state: _Conn, direction: str, *, count: bool = True) -> None:
        """Malformed bytes: drop this direction's reassembly and resync on a start line.

        The other direction keeps its state (it may be mid-message), but the FIFO of
        requests is cleared: after a loss, pairing by order would pair the wrong ones.
        """
        if count:
            self.stats["parse_errors"] += 1
        state.streams.pop(direction, None)
        state.pending.clear()
        state.desync.add(direction)

    # -- messages -> events -------------------------------------------------------------

    def _events(self, state: _Conn, messages: list[HttpMessage]) -> list[L7Event]:
        out: list[L7Event] = []
        for msg in messages:
            self.stats["messages"] += 1
            if msg.truncated:
                self.stats["truncated"] += 1
            if msg.decode_error:
                self.stats["decode_errors"] += 1
            try:
                if msg.is_request:
                    out.extend(self._request(state, msg))
                else:
                    out.extend(self._response(state, msg))
            except Exception:  # a parser bug must not stop capture; counted apart
                self.stats["internal_errors"] += 1
        self.stats["events"] += len(out)
        return out

    def _emit(self, kind: str, ts: int, data: dict[str, Any]) -> L7Event:
        # Last line of defence: every string of every event is scrubbed.
        return L7Event(kind, ts, self.redactor.scrub_tree(data))

    def _request(self, state: _Conn, msg: HttpMessage) -> list[L7Event]:
        self.stats["requests"] += 1
        host = msg.header("host")
        path = msg.target
        if path.startswith(("http://", "https://")):  # absolute form through a proxy
            scheme_rest = path.split("://", 1)[1]
            host = host or scheme_rest.split("/", 1)[0]
            path = "/" + scheme_rest.split("/", 1)[1] if "/" in scheme_rest else "/"
        headers = self.redactor.headers(msg.headers)
        ctype = msg.content_type
        pending = _Pending(msg.method, host, path)
        events = [
            self._emit(
                "http.request",
                msg.ts,
                {
                    "method": msg.method,
                    "host": host,
                    "path": path,
                    "content_type": ctype,
                    "body_size": len(msg.body),
                    "wire_body_size": msg.wire_body_size,
                    "truncated": msg.truncated,
                    "headers": headers,
                },
            )
        ]
        obj = _json_body(ctype, msg.body)
        if obj is None and msg.body and (msg.truncated or ctype in _JSON_TYPES):
            # Cut by a capture/body cap (or filled where capture lost bytes): keep what
            # is complete rather than lose the llm.request.
            obj = llm.salvage_request(msg.body, msg.tail)
            if obj is not None:
                self.stats["salvaged"] += 1
        if obj is not None:
            rpc = mcp.parse_body("application/json", msg.body) if _looks_rpc(obj) else []
            if rpc:
                pending.mcp = True
                events.extend(self._rpc(state, rpc, "c", msg.ts, host, path))
            else:
                call = llm.detect_call(host, path, obj, headers)
                if call is not None:
                    pending.llm = call
                    events.append(self._llm_request(call, obj, msg.ts, host, path))
        if len(state.pending) >= self.max_pending:
            state.pending.popleft()
        state.pending.append(pending)
        return events

    def _response(self, state: _Conn, msg: HttpMessage) -> list[L7Event]:
        if 100 <= msg.status < 200 and msg.status != 101:
            return []  # interim response: the request still waits for its final one
        self.stats["responses"] += 1
        if state.pending:
            req = state.pending.popleft()
        else:
            self.stats["unmatched_responses"] += 1
            req = _Pending("", "", "")
        ctype = msg.content_type
        events = [
            self._emit(
                "http.response",
                msg.ts,
                {
                    "status": msg.status,
                    "content_type": ctype,
                    "body_size": len(msg.body),
                    "wire_body_size": msg.wire_body_size,
                    "truncated": msg.truncated,
                    "method": req.method,
                    "host": req.host,
                    "path": req.path,
                    "headers": self.redactor.headers(msg.headers),
                },
            )
        ]
        if not msg.body:
            return events
        if req.llm is not None:
            events.extend(self._llm_response(req, ctype, msg))
        elif req.mcp or ctype == "text/event-stream" or ctype in _JSON_TYPES:
            rpc = mcp.parse_body(ctype, msg.body)
            if rpc:
                events.extend(self._rpc(state, rpc, "s", msg.ts, req.host, req.path))
        return events

    # -- LLM ----------------------------------------------------------------------------

    def _llm_request(
        self, call: llm.LlmCall, obj: dict[str, Any], ts: int, host: str, path: str
    ) -> L7Event:
        self.stats["llm_calls"] += 1
        parsed = llm.parse_request(call, obj)
        messages = parsed["messages"]
        if call.count_tokens:
            data: dict[str, Any] = {
                "provider": call.provider,
                "api": call.api,
                "wire": call.wire,
                "model": call.model,
                "messages_total": len(messages),
                "tools": parsed["tools"],
                "host": host,
                "path": path,
            }
            return self._emit("llm.count_tokens", ts, data)
        injection = self._score_messages(messages)
        kept = []
        recent = messages[-self.policy.max_messages :]
        if len(recent) < len(messages):
            self.stats["messages_elided"] += len(messages) - len(recent)
        for m in recent:
            m = dict(m)
            m["content"], cut = self.redactor.content_cut("prompts", m.get("content", ""))
            if cut:
                m["truncated"] = True
            kept.append(m)
        data = {
            "provider": call.provider,
            "api": call.api,
            "wire": call.wire,
            "model": call.model,
            "stream": call.stream,
            "messages": kept,
            "tools": parsed["tools"],
            "host": host,
            "path": path,
            "injection": injection,
        }
        # Hashes of the agent's own text, taken after credentials were scrubbed.
        if parsed["system_text"]:
            data["system_prompt_hash"] = inputs.digest(self.redactor.scrub(parsed["system_text"]))
        if parsed["tool_definitions"]:
            data["tools_hash"] = inputs.tools_digest(
                self.redactor.scrub_tree(parsed["tool_definitions"])
            )
        if "mcp_servers" in parsed:
            data["mcp_servers"] = parsed["mcp_servers"]
        if obj.get("_partial"):  # the body was cut: what it kept, values cut, keys whole
            data["partial"] = data["truncated"] = True
        if len(recent) < len(messages):
            data["messages_total"] = len(messages)
        return self._emit("llm.request", ts, data)

    def _score_messages(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """Worst injection score over what an attacker can write: tool and MCP results,
        retrieved content, and external content quoted inside user turns (every user turn
        when ``score_user_turns``). The system prompt and tool definitions are the
        agent's own words and are never scored (their hashes are reported instead)."""
        sources: list[tuple[str, str, str]] = []
        for i, m in enumerate(messages):
            channel = m.get("channel", "")
            text = str(m.get("content") or "")
            if channel in inputs.UNTRUSTED:
                sources.append((f"messages[{i}]", channel, text))
            elif channel == "user":
                if self.score_user_turns:
                    sources.append((f"messages[{i}]", "user", text))
                else:
                    sources += [(f"messages[{i}]", "retrieved", t) for t in external_spans(text)]
        return self._worst(sources)

    def _worst(self, sources: list[tuple[str, str, str]]) -> dict[str, Any]:
        best: dict[str, Any] = {**_NO_INJECTION, "source": "", "channel": ""}
        for where, channel, text in sources:
            result = self.scorer.score(text)
            if result.score > best["score"]:
                best = {**result.to_dict(), "source": where, "channel": channel}
        best["scored"] = len(sources)
        return best

    def _llm_response(self, req: _Pending, ctype: str, msg: HttpMessage) -> list[L7Event]:
        call = req.llm
        assert call is not None
        if call.count_tokens:
            return []
        result = llm.parse_response(call, ctype, msg.body)
        if result is None:
            return []
        model = result.model or call.model
        data: dict[str, Any] = {
            "provider": call.provider,
            "api": call.api,
            "model": model,
            "stream": call.stream,
            "status": msg.status,
            "text": "",
            "finish_reason": result.finish_reason,
            "usage": result.usage,
            "tool_calls": [tc.tool for tc in result.tool_calls],
            "host": req.host,
            "path": req.path,
        }
        data["text"], cut = self.redactor.content_cut("prompts", result.text)
        if cut:
            data["truncated"] = True
        if result.error is not None:
            data["error"] = result.error
        if result.server_results:
            # Provider-run tools (web search, provider-side MCP) fed this text to the model
            # within this turn: score it here, it never passes through a request of ours.
            data["injection"] = self._worst(
                [(f"server_results[{i}]", ch, t) for i, (ch, t) in enumerate(result.server_results)]
            )
        events = [self._emit("llm.response", msg.ts, data)]
        for tc in result.tool_calls:
            call_data: dict[str, Any] = {
                "provider": call.provider,
                "api": call.api,
                "model": model,
                "tool": tc.tool,
                "arguments": None,
                "call_id": tc.call_id,
                "host": req.host,
            }
            call_data["arguments"], cut = self.redactor.content_cut("tool_arguments", tc.arguments)
            if cut:
                call_data["truncated"] = True
            if tc.mcp_server:
                call_data["mcp_server"] = tc.mcp_server
            if tc.server_tool:
                call_data["server_tool"] = True
            events.append(self._emit("llm.tool_call", msg.ts, call_data))
        return events

    # -- MCP ----------------------------------------------------------------------------

    def rpc_events(
        self,
        conn: Hashable,
        messages: list[mcp.RpcMessage],
        origin: str,
        ts: int,
        extra: dict[str, Any],
    ) -> list[L7Event]:
        """JSON-RPC messages that came without HTTP (MCP over stdio): the same events as
        MCP over HTTP, with ``extra`` (host, path, transport…) in place of the request's
        host and path. ``origin`` is "c" for what the client sent, "s" for the server."""
        state = self._conn(conn)
        try:
            events = self._rpc(state, messages, origin, ts, "", "", extra)
        except Exception:  # a parser bug must not stop capture; counted apart
            self.stats["internal_errors"] += 1
            return []
        self.stats["events"] += len(events)
        return events

    def _rpc(
        self,
        state: _Conn,
        messages: list[mcp.RpcMessage],
        origin: str,
        ts: int,
        host: str,
        path: str,
        extra: dict[str, Any] | None = None,
    ) -> list[L7Event]:
        """Calls are remembered by (origin, id); a response from the other side matches."""
        events: list[L7Event] = []
        for m in messages:
            self.stats["mcp_messages"] += 1
            if m.kind in ("request", "notification"):
                data = mcp.summarize_call(m)
                if "arguments" in data:
                    data["arguments"], cut = self.redactor.content_cut(
                        "tool_arguments", data["arguments"]
                    )
                    if cut:
                        data["truncated"] = True
                data["host"], data["path"] = host, path
                data.update(extra or {})
                data["direction"] = "client" if origin == "c" else "server"
                if m.kind == "request":
                    state.rpc[(origin, _id_key(m.id))] = (m.method, str(data.get("tool", "")))
                    while len(state.rpc) > 1024:
                        state.rpc.popitem(last=False)
                events.append(self._emit("mcp.call", ts, data))
            else:
                caller = "c" if origin == "s" else "s"
                method, tool = state.rpc.pop((caller, _id_key(m.id)), ("", ""))
                data = mcp.summarize_result(m, method)
                data["tool"] = tool
                text = mcp.result_text(m.result)
                if method == "tools/list":
                    # Tool definitions are imperative by nature: they never count as
                    # injection. Their hash tells the baseline when a server swaps a
                    # description; their score is kept apart for whoever wants it.
                    text = ""
                    if m.result is not None:
                        data["tools_hash"] = inputs.tools_digest(
                            self.redactor.scrub_tree(mcp.tool_definitions(m))
                        )
                        described = mcp.tool_descriptions(m)
                        data["tool_definitions_injection"] = self._worst(
                            [("tools", "tool_definitions", described)] if described else []
                        )
                data["injection"] = self._worst([("content", "mcp_result", text)] if text else [])
                data["content"], cut = self.redactor.content_cut(
                    "tool_results", mcp.result_text(m.result)
                )
                if cut:
                    data["truncated"] = True
                data["host"], data["path"] = host, path
                data.update(extra or {})
                events.append(self._emit("mcp.result", ts, data))
        return events


def _id_key(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json_body(ctype: str, body: bytes) -> Any:
    """Parse a JSON body (by content type, or by shape when the type is missing/odd)."""
    if not body:
        return None
    if (
        ctype not in _JSON_TYPES
        and not ctype.endswith("+json")
        and body.lstrip()[:1] not in (b"{", b"[")
    ):
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _looks_rpc(obj: Any) -> bool:
    if isinstance(obj, list):
        return bool(obj) and isinstance(obj[0], dict) and obj[0].get("jsonrpc") == "2.0"
    return isinstance(obj, dict) and obj.get("jsonrpc") == "2.0"


def _starts_message(data: bytes) -> bool:
    """After an error, resume only at a chunk that opens a request or status line."""
    head = data[:24]
    if head.startswith(b"HTTP/1."):
        return True
    method, _, rest = head.partition(b" ")
    return bool(rest) and method.isalpha() and method.isupper() and len(method) <= 10
