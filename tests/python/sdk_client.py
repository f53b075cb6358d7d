"""The official MCP Python SDK (`mcp` 2.x from PyPI) as a client.

usage: python sdk_client.py {streamable|sse|auto|2026-07-28} URL [ECHO_TOOL [NOTIFY_TOOL [INPUT_TOOLS]]]

`streamable`: the SDK's Streamable HTTP client in legacy mode (the 2025-era
`initialize` handshake and an `Mcp-Session-Id` session; the SDK opens the
standalone GET stream once the session is initialized). `sse`: its HTTP+SSE
client of 2024-11-05 (`GET URL`, messages POSTed to the announced endpoint).

`auto`: the SDK's default mode (`server/discover` first, the newest era both
sides speak, else `initialize`); `2026-07-28`: that era directly. These two only
list tools and call ECHO_TOOL (the notifications outside requests of that era
come on `subscriptions/listen`, not tested here), and print the era used.

Otherwise: connects, lists tools, calls ECHO_TOOL (default `echo`) with
{"text": "from the sdk"}, subscribes to test://watched-resource, sets the log
level to debug, calls NOTIFY_TOOL (default `notify_later`), then waits (10 s at
most) until its notification handlers have seen both a
notifications/resources/updated for that URI and a notifications/message, which
the server sends outside any request. Prints one JSON line with what it got;
exits 1 when either notification is missing or a step failed.

INPUT_TOOLS (comma-separated; any mode): tools that ask the client for input
while they run (elicitation, sampling): each is called with {} after ECHO_TOOL,
the SDK's callbacks answering (every field of an elicitation form "sdk", a
sampled "from the sdk"), and its result text is kept under "inputs".
"""

from __future__ import annotations

import json
import sys
import traceback
import warnings
from typing import Any

import anyio

if sys.version_info < (3, 11):  # anyio brings the backport there
    from exceptiongroup import BaseExceptionGroup
import mcp_types as types
from mcp import Client
from mcp.client.sse import sse_client
from mcp.shared.exceptions import MCPDeprecationWarning

# resources/subscribe and logging/setLevel are deprecated for the 2026-07-28
# era only; in legacy mode they are the protocol.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

WATCHED = "test://watched-resource"
# The modes that may speak the 2026-07-28 era (no notifications checked).
MODERN_MODES = ("auto", "2026-07-28")
WAIT_SECONDS = 10


async def on_elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    schema = getattr(params, "requested_schema", None) or {}
    fields = schema.get("properties", {}) if isinstance(schema, dict) else {}
    return types.ElicitResult(action="accept", content={k: "sdk" for k in fields})


async def on_sample(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text="from the sdk"), model="sdk"
    )


async def call_input_tools(client: Client, tools: list[str], got: dict[str, Any]) -> None:
    for tool in tools:
        got["step"] = "tools/call " + tool
        r = await client.call_tool(tool, {})
        got["inputs"][tool] = " ".join(c.text for c in r.content if isinstance(c, types.TextContent))
        if r.is_error:
            raise RuntimeError(f"{tool} failed: {got['inputs'][tool]}")


async def run(
    transport: str, url: str, echo_tool: str, notify_tool: str, input_tools: list[str], got: dict[str, Any]
) -> None:
    updated = anyio.Event()
    logged = anyio.Event()
    callbacks: dict[str, Any] = {"elicitation_callback": on_elicit, "sampling_callback": on_sample}

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):
            got["transport_errors"].append(repr(message))
        elif isinstance(message, types.ResourceUpdatedNotification):
            got["updated"].append(message.params.uri)
            if message.params.uri == WATCHED:
                updated.set()

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        got["logs"].append(params.model_dump(mode="json", exclude_none=True))
        logged.set()

    if transport in MODERN_MODES:
        async with Client(url, mode=transport, **callbacks) as client:
            got["protocolVersion"] = client.protocol_version
            got["step"] = "tools/list"
            tools = await client.list_tools()
            got["tools"] = [t.name for t in tools.tools]
            got["step"] = "tools/call " + echo_tool
            echo = await client.call_tool(echo_tool, {"text": "from the sdk"})
            got["result"] = echo.model_dump(mode="json", exclude_none=True)
            await call_input_tools(client, input_tools, got)
            got["step"] = "done"
        return
    server: Any = url if transport == "streamable" else sse_client(url)
    async with Client(
        server, mode="legacy", message_handler=on_message, logging_callback=on_log, **callbacks
    ) as client:
        got["protocolVersion"] = client.protocol_version
        got["step"] = "tools/list"
        tools = await client.list_tools()
        got["tools"] = [t.name for t in tools.tools]
        got["step"] = "tools/call " + echo_tool
        echo = await client.call_tool(echo_tool, {"text": "from the sdk"})
        got["result"] = echo.model_dump(mode="json", exclude_none=True)
        await call_input_tools(client, input_tools, got)
        got["step"] = "resources/subscribe"
        await client.subscribe_resource(WATCHED)
        got["step"] = "logging/setLevel"
        await client.set_logging_level("debug")
        got["step"] = "tools/call " + notify_tool
        notify = await client.call_tool(notify_tool, {"delay_ms": 300, "uri": WATCHED})
        got["notify"] = notify.model_dump(mode="json", exclude_none=True)
        if notify.is_error:
            raise RuntimeError(f"{notify_tool} failed")
        got["step"] = "waiting for the notifications"
        with anyio.move_on_after(WAIT_SECONDS):
            await updated.wait()
            await logged.wait()
        notified = updated.is_set() and logged.is_set()
        got["step"] = "done" if notified else f"no notifications within {WAIT_SECONDS} s"


def describe(e: BaseException) -> str:
    """The leaf exceptions of `e` (anyio wraps failures in exception groups)."""
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}"


def main() -> int:
    args = sys.argv[1:]
    if len(args) < 2 or args[0] not in ("streamable", "sse", *MODERN_MODES):
        print(__doc__, file=sys.stderr)
        return 64
    transport, url = args[0], args[1]
    echo_tool = args[2] if len(args) > 2 else "echo"
    notify_tool = args[3] if len(args) > 3 else "notify_later"
    input_tools = [t for t in args[4].split(",") if t] if len(args) > 4 else []
    got: dict[str, Any] = {
        "transport": transport,
        "protocolVersion": None,
        "tools": [],
        "result": None,
        "notify": None,
        "inputs": {},
        "updated": [],
        "logs": [],
        "transport_errors": [],
        "step": "connect",
        "error": None,
    }
    try:
        anyio.run(run, transport, url, echo_tool, notify_tool, input_tools, got)
    except BaseException as e:  # report every failure as JSON, including exception groups
        got["error"] = describe(e)
        traceback.print_exc(file=sys.stderr)
    print(json.dumps(got), flush=True)
    if transport in MODERN_MODES:
        ok = got["error"] is None and got["step"] == "done"
    else:
        ok = got["error"] is None and WATCHED in got["updated"] and bool(got["logs"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
