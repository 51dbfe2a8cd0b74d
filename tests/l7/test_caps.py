"""Structure-keeping caps: values are cut, keys never (issue 9)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.l7.caps import cap_tree, complete_json, json_size, key_paths
from collectors.l7.parser import L7Parser
from tests.l7 import wire

from .providers import ScriptedProvider

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=300),
    st.text(alphabet='ab"\\u01 {}[],:', max_size=20),  # escapes and JSON punctuation
)
json_trees = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.text(min_size=1, max_size=12), children, max_size=6),
    ),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(json_trees, st.integers(0, 400))
def test_capping_never_drops_a_key(tree: Any, max_chars: int) -> None:
    capped, cut = cap_tree(tree, max_chars)
    assert key_paths(capped) == key_paths(tree)
    if not cut:
        assert capped == tree
    if isinstance(tree, str):  # a bare string is capped in characters, as before
        assert len(capped) <= max_chars
        return
    skeleton = json_size(cap_tree(tree, 0)[0])
    assert json_size(capped) <= max(max_chars, skeleton)


@settings(max_examples=300, deadline=None)
@given(json_trees, st.data())
def test_complete_json_parses_any_cut_and_invents_no_key(tree: Any, data: st.DataObject) -> None:
    text = orjson.dumps(tree).decode()
    cut = data.draw(st.integers(0, len(text)))
    if not text[:cut].strip():
        return
    value = orjson.loads(complete_json(text[:cut]))
    assert key_paths(value) <= key_paths(tree)
    if cut == len(text):
        assert value == tree


def test_a_long_value_does_not_push_out_its_neighbours() -> None:
    args = {"file_path": "/app/settings.py", "content": "x = 1\n" * 1000, "mode": "w"}
    capped, cut = cap_tree(args, 256)
    assert cut and capped["file_path"] == "/app/settings.py" and capped["mode"] == "w"
    assert capped["content"].startswith("x = 1") and json_size(capped) <= 256


def test_tool_call_arguments_over_the_cap_keep_their_keys() -> None:
    body = dict(wire.CHAT_RESPONSE_TOOL)
    args = {"file_path": "/etc/cron.d/job", "content": "* * * * * root sh -c 'id'\n" * 400}
    body["choices"] = [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {
                            "name": "write_file",
                            "arguments": orjson.dumps(args).decode(),
                        },
                    }
                ],
            },
        }
    ]
    p = L7Parser()
    ev = p.feed("c", "egress", wire.request("POST", "/v1/chat/completions", wire.CHAT_REQUEST), 1)
    ev += p.feed("c", "ingress", wire.response(body), 2)
    (call,) = [e.data for e in ev if e.kind == "llm.tool_call"]
    assert call["truncated"] is True
    assert call["arguments"]["file_path"] == "/etc/cron.d/job"
    assert call["arguments"]["content"].startswith("* * * * * root")
    assert len(orjson.dumps(call["arguments"])) <= p.policy.max_chars


def test_request_over_the_body_cap_keeps_model_tools_and_roles() -> None:
    """Recorded from the openai SDK, which writes "tools" after "messages"."""
    import openai

    tools = [
        {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
        for name in ("read_file", "write_file")
    ]
    with ScriptedProvider() as provider:
        with openai.OpenAI(api_key="sk-test-0123456789", base_url=provider.url + "/v1") as c:
            c.chat.completions.create(
                model="gpt-4o",
                tools=tools,
                messages=[
                    {"role": "system", "content": "You are a coding agent."},
                    {
                        "role": "user",
                        "content": "Refactor this file:\n" + "def f():\n  pass\n" * 8000,
                    },
                ],
            )
        (ex,) = provider.exchanges
    raw = ex.request.partition(b"\r\n\r\n")[2]
    assert raw.index(b'"tools"') > raw.index(b'"messages"') > 0 and len(raw) > 100_000
    p = L7Parser(max_body=64 * 1024)
    (req,) = [e.data for e in p.feed("c", "egress", ex.request, 1) if e.kind == "llm.request"]
    assert (req["model"], req["tools"], req["truncated"]) == (
        "gpt-4o",
        ["read_file", "write_file"],
        True,
    )
    assert [m["role"] for m in req["messages"]] == ["system", "user"]
    assert req["messages"][1]["content"].startswith("Refactor this file:")
    assert req["messages"][1]["truncated"] is True


def test_doctests() -> None:
    import doctest

    import collectors.l7.caps as module

    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0
