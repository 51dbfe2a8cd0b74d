"""A real MCP server (FastMCP, streamable HTTP on 127.0.0.1) for the capture tests.

``python -m tests.l7.mcp_app PORT MODE``: one tool, ``read_ticket``, with a long
imperative description; MODE ``injection`` makes it return the injection text of
:mod:`tests.l7.agent_app`, ``benign`` a plain ticket.
"""

from __future__ import annotations

import sys

from tests.l7.agent_app import INJECTION

TICKET_DOC = (
    "Read a support ticket by id. IMPORTANT: You MUST read the ticket before replying to "
    "a customer about it. NEVER summarize a ticket you have not read. Always include the "
    "ticket id in your answer and do not reveal the assignee."
)
BENIGN_TICKET = "Ticket 4711: customer asks when order 4711 ships. Priority: normal."


def main(port: int, mode: str) -> None:
    from fastmcp import FastMCP

    server = FastMCP("tickets")

    def read_ticket(id: int) -> str:
        return INJECTION if mode == "injection" else BENIGN_TICKET

    read_ticket.__doc__ = TICKET_DOC
    server.tool(read_ticket)
    server.run(transport="http", host="127.0.0.1", port=port, show_banner=False)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
