"""A real MCP stdio server (FastMCP) and a real MCP client (the ``mcp`` SDK's
``ClientSession`` over ``stdio_client``) for the stdio capture test and benchmark.

``python -m tests.l7.stdio_app server``: one tool, ``lookup_customer``, answering a
fixed record over stdin/stdout.
``python -m tests.l7.stdio_app client TAG``: prints ``ready``, waits for a line on
stdin (so a test can move it into a pod cgroup first), then spawns the server, lists
its tools, calls the tool with ``{"customer_id": TAG}`` and prints ``done <text>``.
``python -m tests.l7.stdio_app bench N``: the same, then N more calls; prints the
nanoseconds of each call as a JSON list (the stdio benchmark).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

TOOL = "lookup_customer"
RECORD = "Customer {id}: Ada Lovelace, plan enterprise, renews 2027-01-01."


def server() -> None:
    from fastmcp import FastMCP

    app = FastMCP("customers")

    def lookup_customer(customer_id: str) -> str:
        """Look up a customer record by id."""
        return RECORD.format(id=customer_id)

    app.tool(lookup_customer)
    app.run(transport="stdio", show_banner=False)


async def client(tag: str, repeat: int = 0) -> str:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "tests.l7.stdio_app", "server"])
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
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
    else:
        print("ready", flush=True)
        sys.stdin.readline()
        if sys.argv[1] == "bench":
            print("done", asyncio.run(client("bench", int(sys.argv[2]))), flush=True)
        else:
            print("done", asyncio.run(client(sys.argv[2])), flush=True)
