"""MCP servers as tool sources (``pip install 'voxtrio[mcp]'``).

An MCP server is a :class:`~voxtrio.Toolset`: give it to an agent or to the
session like any tool, and the session connects to it when its owner becomes
active (session tools at start, an agent's at hand-off), lists its tools, and
disconnects when the owner is done::

    from voxtrio.mcp import MCPServerHTTP, MCPServerStdio

    session = voxtrio.AgentSession(
        llm=..., tools=[MCPServerStdio("python", ["weather_server.py"])]
    )
    agent = voxtrio.Agent(tools=[MCPServerHTTP("http://127.0.0.1:8000/mcp")])

The ``mcp`` package speaks the protocol; it runs on trio through anyio, so
the connection lives in a task of the session's nursery like everything else.
Each tool's input schema is passed to the LLM as the server gave it, and the
arguments are checked against it before the call. A result the server marks
as an error is shown to the LLM (as a ``ToolError``); a server that cannot be
reached is reported as an ``error`` event and offers no tools.

This module imports ``mcp`` only when a server connects, so importing
``voxtrio`` stays light.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator, Mapping, Sequence

import trio

from .errors import ToolError
from .tools import FunctionTool, Toolset

if TYPE_CHECKING:
    from mcp import Client


class MCPServer(Toolset):
    """The tools of one MCP server, listed when it connects.

    ``timeout`` bounds each tool call and ``connect_timeout`` the connection
    with its tool listing, in seconds of trio time; ``None`` waits as long as
    the server takes. A call that times out is an error output for the LLM.
    ``allowed_tools`` keeps only the tools it names. ``protocol`` is how the
    protocol version is agreed: ``"auto"`` (probe ``server/discover``, fall
    back to the initialize handshake), ``"legacy"`` (the handshake only) or a
    protocol version to adopt without asking (see the mcp package's
    ``Client(mode=...)``). The probe waits up to 10 s of trio time: under an
    autojumping ``MockClock`` that wait is over at once, so tests against a
    real server process use ``"legacy"``.

    A session that closes while a server is connecting or saying goodbye
    does not wait past its close deadline: the connection is cut off there.
    Only what the mcp package itself shields from cancellation still runs
    (for a stdio server: it gives the process 2 s to exit before killing it).
    """

    def __init__(
        self,
        *,
        id: str,
        timeout: float | None = 10.0,
        connect_timeout: float | None = 10.0,
        allowed_tools: Sequence[str] | None = None,
        protocol: str = "auto",
    ) -> None:
        super().__init__(id=id)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.protocol = protocol
        self.allowed_tools = set(allowed_tools) if allowed_tools is not None else None
        self._client: Client | None = None
        self._tools: list[FunctionTool] = []

    @property
    def tools(self) -> list[FunctionTool]:
        return list(self._tools)

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def _target(self, stack: contextlib.AsyncExitStack) -> Any:
        """What ``mcp.Client`` connects to; resources it needs go on ``stack``."""
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[None]:
        try:
            from mcp import Client
        except ImportError as error:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "MCP servers need the mcp package: pip install 'voxtrio[mcp]'"
            ) from error
        # The connect deadline's scope encloses the whole connection: the
        # client's task groups (anyio cancel scopes) are entered inside it, and
        # a cancel scope must not be exited while one entered within it is
        # still open ("Cancel scope stack corrupted"). Once connected, the
        # deadline is lifted.
        with self._deadline(self.connect_timeout, "connecting") as connecting:
            async with contextlib.AsyncExitStack() as stack:
                target = await self._target(stack)
                client = await stack.enter_async_context(Client(target, mode=self.protocol))
                tools = await self._list_tools(client)
                connecting.deadline = math.inf
                self._client, self._tools = client, tools
                try:
                    yield
                finally:
                    self._client = None
                    self._tools = []

    async def _list_tools(self, client: Client) -> list[FunctionTool]:
        tools: list[FunctionTool] = []
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            for tool in page.tools:
                if self.allowed_tools is not None and tool.name not in self.allowed_tools:
                    continue
                tools.append(self._function_tool(tool.name, tool.description or "", tool.input_schema))
            cursor = page.next_cursor
            if cursor is None:
                return tools

    def _function_tool(self, name: str, description: str, schema: Mapping[str, Any]) -> FunctionTool:
        server = self

        async def call(**arguments: Any) -> str:
            return await server.call_tool(name, arguments)

        parameters = {key: value for key, value in dict(schema).items() if key != "title"}
        return FunctionTool.raw(name=name, description=description, parameters=parameters, function=call)

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> str:
        """Call a tool on the server and return its output as text for the LLM."""
        client = self._client
        if client is None:
            raise ToolError(f"the MCP server {self.id} is not connected")
        with self._deadline(self.timeout, f"calling {name}"):
            result = await client.call_tool(name, arguments)
        texts = [block.text for block in result.content if getattr(block, "type", None) == "text"]
        if result.is_error:
            raise ToolError("\n".join(texts) or f"the MCP tool {name} failed")
        if texts:
            return "\n".join(texts)
        if result.structured_content is not None:
            return json.dumps(result.structured_content)
        return ""

    @contextlib.contextmanager
    def _deadline(self, seconds: float | None, doing: str) -> Iterator[trio.CancelScope]:
        with trio.CancelScope() as scope:
            if seconds is not None:
                scope.deadline = trio.current_time() + seconds
            yield scope
        if scope.cancelled_caught:
            raise ToolError(f"the MCP server {self.id} did not answer within {seconds} s ({doing})")


class MCPServerStdio(MCPServer):
    """An MCP server started as a subprocess, spoken to over its stdin/stdout.

    The process starts when the toolset connects and is ended when it
    disconnects.
    """

    def __init__(
        self,
        command: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        id: str | None = None,
        timeout: float | None = 10.0,
        connect_timeout: float | None = 10.0,
        allowed_tools: Sequence[str] | None = None,
        protocol: str = "auto",
    ) -> None:
        super().__init__(
            id=id or f"mcp:{command}",
            timeout=timeout,
            connect_timeout=connect_timeout,
            allowed_tools=allowed_tools,
            protocol=protocol,
        )
        self.command = command
        self.args = list(args)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd

    async def _target(self, stack: contextlib.AsyncExitStack) -> Any:
        from mcp.client.stdio import StdioServerParameters

        return StdioServerParameters(command=self.command, args=self.args, env=self.env, cwd=self.cwd)


class MCPServerHTTP(MCPServer):
    """An MCP server reached over streamable HTTP at ``url`` (e.g. ``http://host/mcp``).

    ``headers`` go with every request (authorization, say). With both
    timeouts ``None`` the HTTP client has no deadlines of its own either.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        id: str | None = None,
        timeout: float | None = 10.0,
        connect_timeout: float | None = 10.0,
        allowed_tools: Sequence[str] | None = None,
        protocol: str = "auto",
    ) -> None:
        super().__init__(
            id=id or f"mcp:{url}",
            timeout=timeout,
            connect_timeout=connect_timeout,
            allowed_tools=allowed_tools,
            protocol=protocol,
        )
        self.url = url
        self.headers = dict(headers) if headers is not None else None

    async def _target(self, stack: contextlib.AsyncExitStack) -> Any:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        unbounded = self.timeout is None and self.connect_timeout is None
        # The mcp package's own defaults: a server may hold a response stream open.
        timeout = httpx2.Timeout(None) if unbounded else httpx2.Timeout(30.0, read=300.0)
        http_client = httpx2.AsyncClient(headers=self.headers, timeout=timeout)
        await stack.enter_async_context(http_client)
        return streamable_http_client(self.url, http_client=http_client)


__all__ = ["MCPServer", "MCPServerHTTP", "MCPServerStdio"]
