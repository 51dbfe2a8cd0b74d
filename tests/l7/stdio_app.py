"""A real MCP stdio server (FastMCP) and a real MCP client (the ``mcp`` SDK's
``ClientSession`` over ``stdio_client``) for the stdio capture test and benchmark.

``python -m tests.l7.stdio_app server``: one tool, ``lookup_customer``, answering a
fixed record over stdin/stdout.
``python -m tests.l7.stdio_app client TAG``: prints ``ready``, waits for a line on
stdin (so a test can move it into a pod cgroup first), then spawns the server, lists
its tools, calls the tool with ``{"customer_id": TAG}`` and prints ``done <text>``.
``python -m tests.l7.stdio_app bench N``: the same, then N more calls; prints the
nanoseconds of each call as a JSON list (the stdio benchmark).
``python -m tests.l7.stdio_app rawclient TAG``: the client with the bare, instant server
(``raw``), so the answer to initialize races the collector; ``stepclient TAG``: the
same, printing ``initialized`` and waiting for a line before its calls.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

TOOL = "lookup_customer"
RECORD = "Customer {id}: Ada Lovelace, plan enterprise, renews 2027-01-01."


def raw_server() -> None:
    """A bare JSON-RPC stdio server (standard library only) that answers at once: the
    shape of a compiled server, whose reply can beat the collector to the pipe."""
    import json as js

    for line in sys.stdin:
        msg = js.loads(line)
        if "id" not in msg:
            continue
        method, result = msg.get("method"), {}
        if method == "initialize":
            result = {"protocolVersion": msg["params"]["protocolVersion"], "capabilities":
                      {"tools": {}}, "serverInfo": {"name": "raw-customers", "version": "1"}}
        elif method == "tools/list":
            result = {"tools": [{"name": TOOL, "description": "Look up a customer.",
                                 "inputSchema": {"type": "object", "properties": {
                                     "customer_id": {"type": "string"}}}}]}
        elif method == "tools/call":
            text = RECORD.format(id=msg["params"]["arguments"]["customer_id"])
            result = {"content": [{"type": "text", "text": text}], "isError": False}
        sys.stdout.write(js.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n")
        sys.stdout.flush()


def server() -> None:
    from fastmcp import FastMCP

    app = FastMCP("customers")

    def lookup_customer(customer_id: str) -> str:
        """Look up a customer record by id."""
        return RECORD.format(id=customer_id)

    app.tool(lookup_customer)
    app.run(transport="stdio", show_banner=False)


async def client(tag: str, repeat: int = 0, kind: str = "server", step: bool = False) -> str:
    """``kind`` "raw": the bare server, given a second to start before initialize, so
    its answer comes within microseconds of the request."""
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "tests.l7.stdio_app", kind])
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        if kind == "raw":
            await asyncio.sleep(1.0)
        await session.initialize()
        if step:  # let the test start the collector mid-session
            print("initialized", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
        elif kind == "raw":  # a whole session can be over before the collector looks
            await asyncio.sleep(1.0)
        tools = await session.list_tools()
        assert [t.name for t in tools.tools] == [TOOL]
        result = await session.call_tool(TOOL, {"customer_id": tag})
        text = "".join(getattr(c, "text", "") for c in result.content)
        took: list[int] = []
        for i in range(repeat):
            start = time.perf_counter_ns()
            await session.call_tool(TOOL, {"customer_id": f"{tag}-{i}"})
            took.append(time.perf_counter_ns() - start)
        return json.dumps(took) if repeat else text


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server()
    elif sys.argv[1] == "raw":
        raw_server()
    else:
        print("ready", flush=True)
        sys.stdin.readline()
        if sys.argv[1] == "bench":
            print("done", asyncio.run(client("bench", int(sys.argv[2]))), flush=True)
        elif sys.argv[1] == "rawclient":
            print("done", asyncio.run(client(sys.argv[2], kind="raw")), flush=True)
        elif sys.argv[1] == "stepclient":
            print("done", asyncio.run(client(sys.argv[2], kind="raw", step=True)), flush=True)
        else:
            print("done", asyncio.run(client(sys.argv[2])), flush=True)
