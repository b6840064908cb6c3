"""A tiny MCP server for the tests, built with the mcp package's server API.

    python tests/mcp_server.py stdio     # speaks MCP on stdin/stdout
    python tests/mcp_server.py http      # binds 127.0.0.1 on a free port,
                                         # prints the port, serves /mcp
"""

import socket
import sys
import time

import anyio
import uvicorn
from mcp.server import MCPServer

server = MCPServer("voxtrio-test")


@server.tool()
def get_weather(city: str) -> str:
    """Get today's weather for a city."""
    return f"It is sunny in {city}."


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@server.tool()
def refuse(reason: str) -> str:
    """Always fails, with the reason."""
    raise ValueError(reason)


@server.tool()
def slow() -> str:
    """Takes a minute of real time."""
    time.sleep(60)
    return "finally"


def serve_http() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    # Listening before the port is announced: the test can connect at once.
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning")
    anyio.run(uvicorn.Server(config).serve, [sock])


if __name__ == "__main__":
    if sys.argv[1:] == ["http"]:
        serve_http()
    else:
        server.run()
