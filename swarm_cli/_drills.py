"""The drills of `swarm readiness --drill`: the kill drill, a test page, and a restore drill per workspace.

**The kill drill never touches the production brain or its agents.** The brain's kill switch is
global (`POST /v1/kill` stops every linked body; the brain has no per-body kill), so engaging it
on the production brain would stop the production agents. Instead the drill starts a throwaway
brain in this process on 127.0.0.1 (an ephemeral port, a temporary SQLite database and tokens of
its own) and a drill body: a real `swarm body` subprocess on a temporary workspace with a
temporary `SWARM_HOME` (whose config raises the rate limits, so writes meet the kill and not a
limit), linked to that brain, driven as an MCP client over stdio. It measures
the whole path — `POST /v1/kill` → the brain → its event stream → the body process → a real
`write_file` refused with `kill_switch_engaged` — with the same code, on this host. What it does
not measure is the production brain's network path (a remote VPS, a TLS proxy); the kill's
failsafe (`[brain] failsafe_s`) bounds that side.

The test page goes to the first level of the configured ladder through the configured channels
(a real page: someone's phone buzzes once), marked as a drill that needs no answer.
"""

from __future__ import annotations

import logging
import os
import secrets as token_bytes
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx

from body_mcp import Admin, BodySettings, SwarmError
from body_mcp.snapshots import SnapshotError
from shared_protocol.config import SwarmConfig, parse_config, render_config
from shared_protocol.refusals import RefusalCode
from shared_protocol.secrets import SecretResolver

from ._drill_records import DrillRecord

KILL_DRILL_GIVE_UP_S = 10.0
"""How long the kill drill waits for a refusal before it records a failure (twice the specification's 5 s)."""
DRILL_START_S = 60.0
"""How long the drill brain and body may take to start and link."""


class DrillFailed(Exception):
    """A drill step did not go as it must; the message says which (recorded as the drill's detail)."""


def _now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def _quiet(logger_name: str) -> Generator[None]:
    """The throwaway brain's log (a body leaving, a link dropping) is not the operator's concern."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


async def kill_drill() -> DrillRecord:
    """Run the kill drill (see the module docstring) and return its record; it never raises for a failed drill."""
    root = Path(tempfile.mkdtemp(prefix="swarm-kill-drill-"))
    at = _now()
    try:
        with _quiet("brain_server"):
            seconds = await _kill_drill(root)
    except Exception as exc:  # noqa: BLE001 - the drill's boundary: whatever went wrong, it failed (recorded)
        detail = str(exc) if isinstance(exc, DrillFailed) else f"{type(exc).__name__}: {exc}"
        return DrillRecord(at=at, ok=False, seconds=None, detail=detail)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    from ._readiness import KILL_DRILL_MAX_S

    return DrillRecord(
        at=at,
        ok=seconds < KILL_DRILL_MAX_S,
        seconds=seconds,
        detail=f"write_file refused (kill_switch_engaged) {seconds * 1000:.0f} ms after POST /v1/kill "
        "(throwaway brain on 127.0.0.1, drill body over stdio)",
    )


async def _kill_drill(root: Path) -> float:
    from brain_server import BrainSettings, issue_token, run
    from brain_server.state import open_engine, sqlite_url

    home, workspace = root / "home", root / "workspace"
    home.mkdir(mode=0o700)
    workspace.mkdir()
    # Its own limits, raised like a benchmark's, so the drill measures the kill and not a rate limit.
    unlimited = {"calls_per_minute": 1_000_000, "file_mods_per_hour": 1_000_000}
    (home / "swarm.toml").write_text(render_config(parse_config({"limits": unlimited})))
    (workspace / "README.md").write_text("A drill body's workspace: written to, then refused after the kill.\n")
    database_url = sqlite_url(root / "brain.db")
    state = await open_engine(database_url)
    try:
        at = _now()
        body_token = await issue_token(state, role="body", label="readiness-drill-body", at=at)
        captain_token = await issue_token(state, role="captain", label="readiness-drill", at=at)
    finally:
        await state.close()
    settings = BrainSettings(host="127.0.0.1", port=0, database_url=database_url, durability="crash")
    stop, urls = anyio.Event(), list[str]()
    ready = anyio.Event()
    seconds = float("inf")

    def listening(url: str) -> None:
        urls.append(url)
        ready.set()

    async with anyio.create_task_group() as group:
        group.start_soon(lambda: run(settings, on_ready=listening, stop=stop, handle_signals=False))
        try:
            with anyio.fail_after(DRILL_START_S):
                await ready.wait()
            seconds = await _drive_body(home, workspace, urls[0], body_token, captain_token)
        finally:
            stop.set()
    return seconds


async def _drive_body(home: Path, workspace: Path, url: str, body_token: str, captain_token: str) -> float:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SWARM_CONFIG", "SWARM_BRAIN_URL", "SWARM_TOKEN", "SWARM_AGENT", "SWARM_HOME")
    }
    env.update({"SWARM_HOME": str(home), "SWARM_TOKEN": body_token, "SWARM_AGENT": "readiness-drill"})
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "swarm_cli", "body", "--workspace", str(workspace), "--brain", url],
        env=env,
    )
    async with (
        Client(params) as body,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {captain_token}"}) as captain,
    ):

        async def call(name: str, **arguments: Any) -> Any:
            return await body.call_tool(name, {"rationale": "readiness kill drill", **arguments})

        with anyio.fail_after(DRILL_START_S):
            while (await call("status")).structured_content["brain"] != "connected":
                await anyio.sleep(0.05)
        before = await call("write_file", path="drill.txt", content="before the kill\n")
        if before.is_error:
            raise DrillFailed(f"the drill body refused a write before the kill: {before.structured_content}")
        started = time.perf_counter()
        response = await captain.post("/v1/kill", json={"reason": "readiness kill drill"})
        if response.status_code != 200:
            raise DrillFailed(f"the drill brain refused POST /v1/kill ({response.status_code}): {response.text}")
        attempt = 0
        while time.perf_counter() - started < KILL_DRILL_GIVE_UP_S:
            attempt += 1
            result = await call("write_file", path="drill.txt", content=f"after the kill, attempt {attempt}\n")
            if result.is_error:
                refusal: dict[str, Any] = result.structured_content or {}
                code = refusal.get("code")
                if code != RefusalCode.KILL_SWITCH_ENGAGED:
                    raise DrillFailed(f"a write after the kill was refused, but with {code}, not kill_switch_engaged")
                return time.perf_counter() - started
            await anyio.sleep(0.005)
        raise DrillFailed(f"the drill body still wrote {KILL_DRILL_GIVE_UP_S:g} s after POST /v1/kill")


async def send_test_page(config: SwarmConfig, secrets: SecretResolver, http: httpx.AsyncClient) -> DrillRecord:
    """One page, marked as a drill, to every target of the ladder's first level; it passes when each was accepted."""
    from brain_server.exceptions import ConfigError
    from brain_server.wake.base import ChannelError, Page
    from brain_server.wake.configure import build_wake, prepare_wake
    from brain_server.wake.escalator import redact
    from shared_protocol.wake import parse_target

    at = _now()
    try:
        setup = build_wake(config, http, prepare_wake(config, secrets))
    except ConfigError as exc:
        return DrillRecord(at=at, ok=False, detail=f"wake-up is not configured: {exc}")
    drill_id = f"drill_{token_bytes.token_hex(4)}"
    sent: list[str] = []
    failed: list[str] = []
    started = time.perf_counter()
    for target in config.escalation.levels[0].targets:
        name, address = parse_target(target)
        channel = setup.channels.get(name)
        addresses = [address] if address else list(setup.recipients.get(name, ()))
        if channel is None or not addresses:
            failed.append(f"{target}: channel not configured")
            continue
        for to in addresses:
            page = Page(
                page_id=f"pg_{drill_id}_{len(sent) + len(failed)}",
                kind="alert",
                subject_id=drill_id,
                title="Swarm readiness drill: a test page",
                summary="`swarm readiness --drill` tests the wake-up ladder's first level. No answer is needed.",
                facts={"drill": drill_id},
                target=to,
            )
            try:
                await channel.send(page)
            except ChannelError as exc:
                failed.append(f"{redact(name, to)}: {exc}")
            else:
                sent.append(redact(name, to))
    seconds = time.perf_counter() - started
    if failed or not sent:
        return DrillRecord(at=at, ok=False, seconds=seconds, detail="test page failed: " + "; ".join(failed))
    return DrillRecord(at=at, ok=True, seconds=seconds, detail=f"level 0 paged: {', '.join(sent)}")


def restore_drill(
    settings: BodySettings, open_admin: Callable[[BodySettings], AbstractContextManager[Admin]]
) -> DrillRecord:
    """`swarm snapshot drill` on one workspace (audited in its trail): the newest snapshot restored and checked."""
    at = _now()
    try:
        with open_admin(settings) as admin:
            report = admin.snapshotter().drill()
    except (SnapshotError, SwarmError, OSError) as exc:
        from ._errors import describe

        return DrillRecord(at=at, ok=False, detail=describe(exc))
    return drill_record(at, report.snapshot_id, report.verify_s + report.restore_s + report.check_s)


def drill_record(at: datetime, snapshot_id: str, seconds: float) -> DrillRecord:
    """A passed restore drill's record (`swarm snapshot drill` makes the same)."""
    from ._readiness import RESTORE_MAX_S

    return DrillRecord(at=at, ok=seconds < RESTORE_MAX_S, seconds=seconds, detail=f"{snapshot_id} restored and checked")
