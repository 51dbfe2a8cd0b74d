"""How much of a prompt or tool payload may leave the node.

Kept apart from the redaction engine so that the parser's public signature
(``L7Parser(policy)``) depends on a small frozen value, not on the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MODES", "ContentPolicy"]

MODES = frozenset({"keep", "hash", "drop"})


@dataclass(frozen=True, slots=True)
class ContentPolicy:
    """Per field family: ``keep`` (credentials scrubbed, capped), ``hash`` (sha256), ``drop``.

    Families: ``prompts`` (messages sent to a model and its text back), ``tool_arguments``
    (arguments of model tool calls and MCP calls), ``tool_results`` (what tools return).
    ``max_chars`` caps each kept string so that one huge document cannot blow up a frame;
    the cut is counted by the parser (``stats["content_capped"]``). ``max_messages``
    keeps only the most recent messages of a long conversation in ``llm.request`` (agents
    resend the whole history on every call; the new turns are the ones that matter, and
    a raw-topic message must stay well under the broker's size limit). Injection scoring
    still reads every message.
    """

    prompts: str = "keep"
    tool_arguments: str = "keep"
    tool_results: str = "keep"
    max_chars: int = 4096
    max_messages: int = 64

    def __post_init__(self) -> None:
        for name in ("prompts", "tool_arguments", "tool_results"):
            mode = getattr(self, name)
            if mode not in MODES:
                raise ValueError(f"ContentPolicy.{name}: {mode!r} not in {sorted(MODES)}")
        if self.max_chars < 0 or self.max_messages < 1:
            raise ValueError("ContentPolicy.max_chars must be >= 0, max_messages >= 1")
