"""Server-sent events (text/event-stream) split into (event, data) pairs.

Streaming LLM responses and MCP's streamable HTTP transport both frame JSON in SSE.
Parsing happens once the HTTP body is complete, so this is a plain function over text.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["iter_sse"]


def iter_sse(text: str) -> Iterator[tuple[str, str]]:
    """Yield ``(event_name, data)`` per dispatched event (WHATWG event-stream rules).

    Multiple ``data:`` lines join with newlines; comments (``:``) and ``id``/``retry``
    fields are skipped; a trailing event without its blank line is still dispatched,
    because a capped or close-delimited body should not lose its last event.
    """
    event = ""
    data: list[str] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not raw:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if raw.startswith(":"):
            continue
        name, _, value = raw.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield event or "message", "\n".join(data)
