"""Starting a registered body the way the IDE would, and asking it for its tools (`swarm doctor`)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import cast

import anyio

from .findings import Finding

REQUIRED_BODY_TOOLS = frozenset({"read_text_file", "write_file", "edit_file", "status"})


@dataclass(kw_only=True, frozen=True)
class BodyLaunch:
    """A body command line as an IDE registered it (what the probe runs)."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


async def probe_body(launch: BodyLaunch, *, timeout_s: float, ide: str = "body") -> Finding:
    """Start the body as the IDE would and list its tools over stdio, within `timeout_s`."""
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    from .doctor import DoctorCheck, Finding

    argv = list(launch.argv)
    subject = " ".join(argv)
    env = {**os.environ, **dict(launch.env)}
    names: set[str] = set()
    error: str | None = None
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errlog:
        params = StdioServerParameters(command=argv[0], args=argv[1:], env=env)
        try:
            with anyio.fail_after(timeout_s):
                async with Client(stdio_client(params, errlog=errlog)) as client:
                    names = {tool.name for tool in (await client.list_tools()).tools}
        except TimeoutError:
            error = f"it did not answer within {timeout_s:g} s"
        except Exception as exc:  # noqa: BLE001 - the probe's boundary: any failure to start is the finding
            error = f"it did not start ({_leaf(exc)})"
        errlog.seek(0)
        stderr = [line for line in errlog.read().splitlines() if line.strip()]
    if error is None and not names >= REQUIRED_BODY_TOOLS:
        error = f"it answers but lacks {sorted(REQUIRED_BODY_TOOLS - names)}"
    if error is None:
        message = f"the body starts and answers over stdio ({len(names)} tools)"
        return Finding(ide=ide, check=DoctorCheck.BODY_STARTS, ok=True, subject=subject, message=message)
    said = f"; it said: {stderr[-1]}" if stderr else ""
    return Finding(
        ide=ide,
        check=DoctorCheck.BODY_STARTS,
        ok=False,
        subject=subject,
        message=f"the body registered for {ide} fails: {error}{said}",
        fix=f"run `{subject}` in a terminal to see why"
        + ("" if ide == "body" else f"; re-run `swarm init --ide {ide}` if swarm or the workspace moved"),
    )


def _leaf(exc: BaseException) -> str:
    """The first real error inside task-group wrappers."""
    leaf = exc
    while inner := cast(tuple[BaseException, ...], getattr(leaf, "exceptions", ())):
        leaf = inner[0]
    return f"{type(leaf).__name__}: {leaf}" if str(leaf) else type(leaf).__name__
