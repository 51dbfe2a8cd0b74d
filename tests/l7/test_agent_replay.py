"""A real pydantic-ai agent on four model back ends (OpenAI chat, OpenAI Responses,
Anthropic, Bedrock Converse through boto3), each SDK writing to the scripted provider;
the recorded bytes go through :class:`L7Parser`. The agent's system prompt quotes an
injection phrase to warn against it and its tools have long imperative descriptions:
a benign run must flag nothing, the same run with the injection in a tool result must
flag the request that carries it, on the ``tool_result`` channel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from collectors.l7.injection import default_scorer

from .agent_app import INJECTION, SYSTEM_PROMPT
from .providers import FINAL_TEXT, ScriptedProvider
from .test_sdk_recorded import only, replay

PLAN = [("lookup_order", {"id": 4711}), ("search_help", {"query": "returns"})]
MODELS = {
    "openai-chat": ("openai", "chat.completions"),
    "openai-responses": ("openai", "responses"),
    "anthropic": ("anthropic", "messages"),
    "bedrock": ("bedrock", "converse"),
}


ROOT = Path(__file__).resolve().parents[2]


def _run(model: str, mode: str) -> list[dict[str, Any]]:
    """One agent turn in its own process (as an agent runs), recorded by the provider."""
    with ScriptedProvider(plan=list(PLAN)) as provider:
        args = [provider.url, "-", "sk-test-replay-0123456789", mode, "-", model]
        done = subprocess.run(
            [sys.executable, "-m", "tests.l7.agent_app", *args],
            input="go\n",
            text=True,
            capture_output=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.split() == ["ready", *FINAL_TEXT.split()]
        return only(replay(provider.exchanges), "llm.request")


@pytest.mark.parametrize("model", list(MODELS))
def test_real_agent_benign_run_flags_nothing_injected_tool_result_is_flagged(
    model: str,
) -> None:
    assert default_scorer().score(SYSTEM_PROMPT).flagged  # what must stay unscored
    benign = _run(model, "benign")
    assert len(benign) == len(PLAN) + 1
    assert {(r["provider"], r["api"]) for r in benign} == {MODELS[model]}
    assert [r["injection"]["flagged"] for r in benign] == [False] * len(benign)
    assert [r["injection"]["scored"] > 0 for r in benign] == [False, True, True]
    assert benign[0]["tools"] == ["lookup_order", "search_help"]
    assert len({r["system_prompt_hash"] for r in benign}) == 1
    assert len({r["tools_hash"] for r in benign}) == 1

    injected = _run(model, "tool-injection")
    assert [r["injection"]["flagged"] for r in injected] == [False, True, True]
    assert injected[1]["injection"]["channel"] == "tool_result"
    assert INJECTION[:40] in str(injected[1]["messages"])
