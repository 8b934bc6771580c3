"""An MCP server for toolgate's proxy tests, on the official Python SDK:
speaks both protocol eras (the 2025 handshake and 2026-07-28 discovery) over
stdio, answers at once, and can fail, report progress, or crash on request.

    python fixture_server.py [--pid-file PATH]
"""

import asyncio
import os
import sys

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("toolgate-fixture")


@server.tool()
def echo(message: str) -> str:
    """Echoes the message."""
    return f"Echo: {message}"


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@server.tool()
def fail(why: str = "asked to fail") -> str:
    """Always fails: the result is an error."""
    raise ToolError(why)


@server.tool()
async def slow(steps: int, ctx: Context) -> str:
    """Takes `steps` tenths of a second, reporting progress after each."""
    for step in range(steps):
        await asyncio.sleep(0.1)
        await ctx.report_progress(step + 1, steps)
    return f"done after {steps} steps"


@server.tool()
def crash() -> str:
    """Exits the server at once, mid-call."""
    os._exit(3)


@server.tool()
def delete_everything(confirm: bool) -> str:
    """A tool no agent should see."""
    return "deleted"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--pid-file":
        with open(sys.argv[2], "w") as f:
            f.write(str(os.getpid()))
    server.run("stdio")
