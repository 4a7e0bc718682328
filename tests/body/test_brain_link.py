"""A body linked to a real brain on loopback: the brain's kill reaches every body, failsafe, audit shipping."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx
import pytest

from body_mcp import Body, BodySettings
from body_mcp import brain_link as brain_link_module
from body_mcp.brain_client import BrainRejected
from body_mcp.brain_link import BrainLink
from body_mcp.link_state import read_link_record
from brain_server import BrainSettings, SqliteStateEngine, issue_token, run
from brain_server.state import sqlite_url
from shared_protocol.audit import attestation
from shared_protocol.brain import AuditAck, AuditBatch
from shared_protocol.config import parse_config
from tests.body.helpers import linked_up, reach_brain
from tests.brain.helpers import issue_in
from tests.cli.inprocess import run_swarm as run_here

pytestmark = pytest.mark.anyio


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _tokens(db: Path) -> dict[str, str]:
    state = await SqliteStateEngine.open(db)
    try:
        return {
            role: await issue_token(state, role=role, label=f"{role}-test", at=datetime.now(UTC))
            for role in ("body", "captain")
        }
    finally:
        await state.close()


class Clock:
    """Seconds that pass only when the test says so: one clock for the brain's leases and the link's renewals."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def brain_on(
    port: int, db: Path, *, clock: Callable[[], float] = time.time, **settings: float
) -> AsyncGenerator[anyio.Event]:
    stop, ready = anyio.Event(), anyio.Event()
    config = BrainSettings(host="127.0.0.1", port=port, database_url=sqlite_url(db), keepalive_s=0.2, **settings)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: run(config, on_ready=lambda _url: ready.set(), stop=stop, handle_signals=False, clock=clock)
        )
        with anyio.fail_after(10):
            await ready.wait()
        try:
            yield stop
        finally:
            stop.set()


async def wait_until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


def linked_body(
    tmp_path: Path, home: Path, n: int, url: str, token: str, *, link_clock: Callable[[], float] = time.monotonic
) -> Body:
    ws = tmp_path / f"ws{n}"
    ws.mkdir()
    (ws / "f.txt").write_text("x\n")
    settings = BodySettings(
        workspace=ws.resolve(), home=home, config=parse_config({}), brain_url=url, brain_token=token
    )
    return Body(settings, link_clock=link_clock)


async def write(body: Body, name: str) -> tuple[bool, str | None]:
    outcome = await body.call_tool("write_file", {"path": name, "content": "y", "rationale": "test"})
    return outcome.is_error, outcome.structured.get("code")


def run_swarm(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI's entry point in the test's process (`tests/cli/inprocess.py`: no new Python to start; call it from a
    worker thread, as the test's event loop serves the brain), with no brain URL or token from the environment (the
    test passes them as flags)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SWARM_BRAIN_URL", "SWARM_TOKEN")}
    env["SWARM_HOME"] = str(home)
    return run_here(args, env)


@dataclass(frozen=True)
class Brain:
    url: str
    tokens: dict[str, str]
    captain: httpx.AsyncClient


@asynccontextmanager
async def brain_with_captain(
    tmp_path: Path, *, clock: Callable[[], float] = time.time, **settings: float
) -> AsyncGenerator[Brain]:
    """A live brain on a fresh database (with `settings` and `clock`), and an HTTP client holding its captain token."""
    db, port = tmp_path / "brain.db", _free_port()
    tokens = await _tokens(db)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {tokens['captain']}"}
    async with (
        brain_on(port, db, clock=clock, **settings),
        httpx.AsyncClient(base_url=url, headers=headers) as captain,
    ):
        yield Brain(url=url, tokens=tokens, captain=captain)


async def approved_decision(body: Body, captain: httpx.AsyncClient) -> str:
    """A decision the body asked for and the captain approved."""
    asked = await body.call_tool("request_approval", {"summary": "s", "confidence": 0.2, "rationale": "r"})
    decision = str(asked.structured["decision_id"])
    assert (await captain.post(f"/v1/decisions/{decision}/approve", json={"reason": "ok"})).status_code == 200
    return decision


async def test_a_brain_kill_reaches_eight_bodies_and_resume_lifts_it(tmp_path: Path, home: Path) -> None:
    db, port = tmp_path / "brain.db", _free_port()
    tokens = await _tokens(db)
    url = f"http://127.0.0.1:{port}"
    body_tokens = [await issue_in(db, "body", f"body-{n}") for n in range(8)]  # a body token speaks for one body
    async with brain_on(port, db):
        bodies = [linked_body(tmp_path, home, n, url, body_tokens[n]) for n in range(8)]
        try:
            async with linked_up(*bodies):
                assert [await write(b, "before.txt") for b in bodies] == [(False, None)] * 8
                async with httpx.AsyncClient(base_url=url) as captain:
                    headers = {"Authorization": f"Bearer {tokens['captain']}"}
                    started = time.perf_counter()
                    response = await captain.post("/v1/kill", json={"reason": "drill"}, headers=headers)
                    assert response.status_code == 200
                    await wait_until(lambda: all(b.kill_switch.state().engaged for b in bodies), timeout=5)
                    elapsed = time.perf_counter() - started
                    assert elapsed < 5
                    assert [await write(b, "during.txt") for b in bodies] == [(True, "kill_switch_engaged")] * 8
                    read = await bodies[0].call_tool("read_text_file", {"path": "f.txt", "rationale": "still reading"})
                    assert not read.is_error
                    assert (await captain.post("/v1/resume", json={"reason": "ok"}, headers=headers)).status_code == 200
                    await wait_until(lambda: not any(b.kill_switch.state().engaged for b in bodies))
                    assert [await write(b, "after.txt") for b in bodies] == [(False, None)] * 8
                    # Every body's audit chain reaches the brain, once.
                    for b in bodies:
                        assert b.link is not None
                        head = b.audit.tail(1)[0].seq
                        assert await b.link.ship_pending() == head
                        assert await b.link.ship_pending() == head
        finally:
            for body in bodies:
                body.close()


async def test_a_body_fails_closed_when_its_brain_dies_and_recovers_when_it_returns(tmp_path: Path, home: Path) -> None:
    db, port = tmp_path / "brain.db", _free_port()
    tokens = await _tokens(db)
    body = linked_body(tmp_path, home, 0, f"http://127.0.0.1:{port}", tokens["body"])
    assert body.link is not None
    link = body.link
    try:
        async with anyio.create_task_group() as tg:
            async with brain_on(port, db, failsafe_s=0.6, heartbeat_interval_s=0.1):
                tg.start_soon(link.run)
                await wait_until(lambda: body.brain_state == "connected")
                assert await write(body, "a.txt") == (False, None)
            # The brain is gone: after the failsafe time the body refuses mutating calls. (Real time, not a driven
            # clock: nothing says when the link has lost the brain, and an answer it reads late would reset one.)
            await wait_until(lambda: body.kill_switch.state().engaged, timeout=5)
            assert await write(body, "b.txt") == (True, "brain_unreachable")
            assert not (await body.call_tool("list_directory", {"path": ".", "rationale": "r"})).is_error
            async with brain_on(port, db, failsafe_s=0.6, heartbeat_interval_s=0.1):
                await wait_until(lambda: not body.kill_switch.state().engaged, timeout=10)
                assert await write(body, "c.txt") == (False, None)
                # Nothing of the audit chain was lost while the brain was down, nor duplicated after.
                assert await link.ship_pending() == body.audit.tail(1)[0].seq
            tg.cancel_scope.cancel()
    finally:
        body.close()


async def test_decisions_of_a_linked_body_are_the_brains(tmp_path: Path, home: Path) -> None:
    db, port = tmp_path / "brain.db", _free_port()
    tokens = await _tokens(db)
    url = f"http://127.0.0.1:{port}"
    async with brain_on(port, db):
        body = linked_body(tmp_path, home, 0, url, tokens["body"])
        try:
            await reach_brain(body)
            asked = await body.call_tool(
                "request_approval", {"summary": "big refactor", "confidence": 0.5, "rationale": "unsure"}
            )
            assert not asked.is_error and asked.structured["state"] == "pending"
            decision_id = asked.structured["decision_id"]
            async with httpx.AsyncClient(base_url=url) as captain:
                headers = {"Authorization": f"Bearer {tokens['captain']}"}
                response = await captain.post(
                    f"/v1/decisions/{decision_id}/approve", json={"reason": "fine"}, headers=headers
                )
                assert response.status_code == 200
            status = await body.call_tool("decision_status", {"id": decision_id, "rationale": "poll"})
            assert status.structured["state"] == "approved"
            none = await body.call_tool("next_task", {"rationale": "work"})
            assert not none.is_error and none.structured["task"] is None
        finally:
            body.close()


async def test_the_cli_kills_resumes_and_answers_on_the_brain(tmp_path: Path, home: Path) -> None:
    db, port = tmp_path / "brain.db", _free_port()
    tokens = await _tokens(db)
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_BRAIN_URL": url, "SWARM_TOKEN": tokens["captain"]}

    def swarm(*args: str) -> subprocess.CompletedProcess[str]:
        return run_here(args, env)  # (in this process, from a worker thread: the test's loop serves the brain)

    headers = {"Authorization": f"Bearer {tokens['captain']}"}
    async with brain_on(port, db), httpx.AsyncClient(base_url=url, headers=headers) as api:
        kill = await anyio.to_thread.run_sync(lambda: swarm("kill", "--reason", "cli drill"))
        assert kill.returncode == 0, kill.stderr
        assert (await api.get("/v1/status")).json()["kill"]["engaged"] is True
        assert (await anyio.to_thread.run_sync(lambda: swarm("resume"))).returncode == 0
        assert (await api.get("/v1/status")).json()["kill"]["engaged"] is False
        body = linked_body(tmp_path, home, 0, url, tokens["body"])
        try:
            await reach_brain(body)
            asked = await body.call_tool("request_approval", {"summary": "s", "confidence": 0.2, "rationale": "r"})
            decision_id = asked.structured["decision_id"]
        finally:
            body.close()
        approved = await anyio.to_thread.run_sync(lambda: swarm("approve", decision_id, "--reason", "ok"))
        assert approved.returncode == 0 and "approved" in approved.stdout
        again = await anyio.to_thread.run_sync(lambda: swarm("deny", decision_id))
        assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
        env["SWARM_TOKEN"] = "not-a-token"
        refused = await anyio.to_thread.run_sync(lambda: swarm("kill"))
        assert refused.returncode == 1 and (await api.get("/v1/status")).json()["kill"]["engaged"] is False


async def test_swarm_undo_of_a_decision_reverses_its_files_and_its_task_updates(tmp_path: Path, home: Path) -> None:
    async with brain_with_captain(tmp_path) as brain:
        url, tokens, api = brain.url, brain.tokens, brain.captain
        queued = (await api.post("/v1/tasks", json={"title": "ship it", "description": "d"})).json()
        body = linked_body(tmp_path, home, 0, url, tokens["body"])
        try:
            await reach_brain(body)
            under = {"decision_id": await approved_decision(body, api), "rationale": "the approved plan"}
            wrote = await body.call_tool("write_file", {"path": "f.txt", "content": "changed\n", **under})
            took = await body.call_tool("next_task", under)
            assert not wrote.is_error and not took.is_error and took.structured["task"]["id"] == queued["id"]
            done = await body.call_tool(
                "report_outcome", {"task_id": queued["id"], "outcome": "succeeded", "summary": "shipped", **under}
            )
            assert not done.is_error, done.structured
            claim_action = took.structured["action_id"]
        finally:
            body.close()
        decision = under["decision_id"]
        workspace = str(tmp_path / "ws0")
        brain_args = ("--workspace", workspace, "--brain", url, "--token", tokens["captain"])

        undone = await anyio.to_thread.run_sync(lambda: run_swarm(home, "undo", decision, *brain_args))
        assert undone.returncode == 0, undone.stderr
        assert "undone: " in undone.stdout and "brain: reversed task_outcome of" in undone.stdout
        assert (tmp_path / "ws0" / "f.txt").read_text() == "x\n"
        task = (await api.get("/v1/status")).json()
        assert task["queued_tasks"] == 1, "the claim is reversed too: the task is back in the queue"

        only_brain = await anyio.to_thread.run_sync(lambda: run_swarm(home, "undo", claim_action, *brain_args))
        assert only_brain.returncode == 1 and "nothing to undo" in only_brain.stderr

        # The one id the undo was recorded as redoes both sides: the file and the finished task.
        recorded = undone.stdout.split("recorded as ", 1)[1].split(";", 1)[0]
        redone = await anyio.to_thread.run_sync(lambda: run_swarm(home, "undo", recorded, *brain_args))
        assert redone.returncode == 0, redone.stderr
        assert "brain: reversed reversal of" in redone.stdout
        assert (tmp_path / "ws0" / "f.txt").read_text() == "changed\n"
        status = (await api.get("/v1/status")).json()
        assert (status["queued_tasks"], status["claimed_tasks"]) == (0, 0), "finished again, as the decision left it"
        no_token = await anyio.to_thread.run_sync(
            lambda: run_swarm(home, "undo", decision, "--workspace", workspace, "--brain", url)
        )
        assert no_token.returncode == 1 and "token" in no_token.stderr.lower()
    gone = await anyio.to_thread.run_sync(lambda: run_swarm(home, "undo", decision, *brain_args))
    assert gone.returncode == 1 and len(gone.stderr.strip().splitlines()) == 1
    assert "nothing was undone" in gone.stderr and "without --brain" in gone.stderr


async def test_a_body_that_pruned_its_log_before_it_was_linked_ships_what_it_kept(tmp_path: Path, home: Path) -> None:
    from datetime import timedelta

    db, port = tmp_path / "brain.db", _free_port()
    tokens = await _tokens(db)
    url = f"http://127.0.0.1:{port}"
    ws = tmp_path / "ws"
    ws.mkdir()
    standalone = Body(BodySettings(workspace=ws.resolve(), home=home, config=parse_config({})))
    try:
        for n in range(4):
            assert await write(standalone, f"f{n}.txt") == (False, None)
        assert standalone.audit.prune(retention_days=90, now=datetime.now(UTC) + timedelta(days=91)) == 3
        kept = [e.seq for e in standalone.audit.tail(100)]
    finally:
        standalone.close()
    assert kept == [4, 5]
    settings = BodySettings(
        workspace=ws.resolve(), home=home, config=parse_config({}), brain_url=url, brain_token=tokens["body"]
    )
    linked = Body(settings)
    try:
        assert linked.link is not None
        async with brain_on(port, db):
            assert await linked.link.ship_pending() == 5
            assert linked.link.shipped_through() == 5
        state = await SqliteStateEngine.open(db)
        try:
            assert [e.seq for e in await state.audit_events(linked.audit.body_id)] == [4, 5]
        finally:
            await state.close()
    finally:
        linked.close()


async def test_swarm_undo_touches_nothing_when_the_brain_would_refuse(tmp_path: Path, home: Path) -> None:
    async with brain_with_captain(tmp_path) as brain:
        url, tokens, api = brain.url, brain.tokens, brain.captain
        queued = (await api.post("/v1/tasks", json={"title": "t", "description": "d"})).json()
        body = linked_body(tmp_path, home, 0, url, tokens["body"])
        try:
            await reach_brain(body)
            under = {"decision_id": await approved_decision(body, api), "rationale": "plan"}
            assert not (await body.call_tool("write_file", {"path": "f.txt", "content": "new\n", **under})).is_error
            assert not (await body.call_tool("next_task", under)).is_error
            outside = {"task_id": queued["id"], "outcome": "succeeded", "rationale": "not under the decision"}
            assert not (await body.call_tool("report_outcome", outside)).is_error
        finally:
            body.close()
        args = ["--workspace", str(tmp_path / "ws0"), "--brain", url, "--token", tokens["captain"]]
        refused = await anyio.to_thread.run_sync(lambda: run_swarm(home, "undo", under["decision_id"], *args))
        assert refused.returncode == 1 and "changed since" in refused.stderr and "force" in refused.stderr
        assert (tmp_path / "ws0" / "f.txt").read_text() == "new\n", "the workspace is untouched"
        assert (await api.get("/v1/status")).json()["queued_tasks"] == 0


async def test_a_brain_holding_a_longer_foreign_chain_for_this_body_never_makes_it_skip_events(
    tmp_path: Path, home: Path
) -> None:
    from body_mcp.brain_client import BrainRejected
    from tests.brain.helpers import audit_chain, batch

    async with brain_with_captain(tmp_path) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        try:
            assert body.link is not None
            foreign = audit_chain(body.audit.body_id, 50)  # someone shipped 50 events under this body's id
            headers = {"Authorization": f"Bearer {brain.tokens['body']}"}
            response = await brain.captain.post("/v1/audit", json=batch(body.audit.body_id, foreign), headers=headers)
            assert response.status_code == 200
            body.record_human(action="kill", rationale="one local event")
            with pytest.raises(BrainRejected, match="chain"):
                await body.link.ship_pending()
            assert body.link.shipped_through() == 0, "our own events are still to ship"
        finally:
            body.close()


async def test_a_body_whose_token_is_revoked_fails_closed_at_once_and_says_why(tmp_path: Path, home: Path) -> None:
    async with brain_with_captain(tmp_path) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        try:
            async with linked_up(body):
                assert await write(body, "before.txt") == (False, None)

                db = str(tmp_path / "brain.db")
                listed = await anyio.to_thread.run_sync(lambda: run_swarm(home, "brain", "token", "list", "--db", db))
                assert listed.returncode == 0, listed.stderr
                token_id = next(line.split()[0] for line in listed.stdout.splitlines() if "role=body" in line)
                revoked = await anyio.to_thread.run_sync(
                    lambda: run_swarm(home, "brain", "token", "revoke", token_id, "--db", db, "--reason", "leaked")
                )
                assert revoked.returncode == 0, revoked.stderr

                # Well before the failsafe (10 s): the brain answers 401 and the body stops acting.
                await wait_until(lambda: body.brain_state == "refused", timeout=5)
                refused = await body.call_tool("write_file", {"path": "after.txt", "content": "y", "rationale": "t"})
                assert refused.is_error and refused.structured["code"] == "brain_unreachable"
                assert "revoked" in refused.structured["message"], refused.structured["message"]
                assert not (tmp_path / "ws0" / "after.txt").exists()
                read = await body.call_tool("read_text_file", {"path": "f.txt", "rationale": "reads still work"})
                assert not read.is_error
                status = await body.call_tool("status", {"rationale": "why refused?"})
                assert status.structured["brain"] == "refused" and status.structured["kill_switch"] == "engaged"
        finally:
            body.close()


async def test_a_linked_body_renews_the_lease_of_a_task_it_holds(tmp_path: Path, home: Path) -> None:
    clock = Clock()
    async with brain_with_captain(tmp_path, clock=clock, lease_s=1, sweep_interval_s=0.1) as brain:
        queued = (await brain.captain.post("/v1/tasks", json={"title": "longer than a lease"})).json()
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"], link_clock=clock)
        try:
            assert body.link is not None
            async with linked_up(body):
                took = await body.call_tool("next_task", {"rationale": "work"})
                assert took.structured["task"]["id"] == queued["id"], took.structured
                claim = body.link.claims[queued["id"]]
                # Over two leases, 0.7 s at a time: each step is past a third of the lease (a renewal is due) and
                # within the lease the last renewal gave. A renewal that did not happen, or did not extend the
                # lease, lets it run out: the next renewal finds the task requeued, and this wait times out.
                for _ in range(3):
                    clock.now += 0.7
                    await wait_until(lambda: claim.renewed_at == clock.now)
                done = await body.call_tool(
                    "report_outcome",
                    {"task_id": queued["id"], "outcome": "succeeded", "summary": "s", "rationale": "done"},
                )
                assert not done.is_error, done.structured
                assert done.structured["task"]["attempts"] == 1, "never requeued"
        finally:
            body.close()


async def test_a_claim_whose_lease_ran_out_is_reported_lost(tmp_path: Path, home: Path) -> None:
    clock = Clock()
    async with brain_with_captain(tmp_path, clock=clock, lease_s=1) as brain:
        queued = (await brain.captain.post("/v1/tasks", json={"title": "t"})).json()
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"], link_clock=clock)
        try:
            assert body.link is not None
            await reach_brain(body)  # registered once, not running: nothing renews
            took = await body.call_tool("next_task", {"rationale": "work"})
            assert took.structured["task"]["id"] == queued["id"], took.structured
            clock.now += 1.5  # past the lease, for the brain and the body both
            await body.link.renew_due()
            assert queued["id"] not in body.link.claims
            late = await body.call_tool(
                "report_outcome", {"task_id": queued["id"], "outcome": "succeeded", "summary": "s", "rationale": "r"}
            )
            assert late.is_error and late.structured["code"] == "not_found"
            assert "was lost" in late.structured["message"], late.structured["message"]
        finally:
            body.close()


async def test_a_linked_body_ships_its_audit_chain_in_batches_under_the_brains_cap(tmp_path: Path, home: Path) -> None:
    async with brain_with_captain(tmp_path, max_audit_request_bytes=4096) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        try:
            assert body.link is not None
            registration = await body.link.register()
            assert registration.max_audit_request_bytes == 4096
            for n in range(12):  # ~1 KB each: three times the cap in all
                body.record_human(action="note", rationale=f"event {n} " + "r" * 800)
            head = body.audit.tail(1)[0].seq
            assert await body.link.ship_pending() == head, "every event stored, in batches the brain took"
        finally:
            body.close()


async def test_a_shipping_round_ships_the_chain_as_it_began_and_leaves_later_events_to_the_next(
    tmp_path: Path, home: Path
) -> None:
    """The shipping loop's round (`round_only`): every event there when it began, over as many batches as the cap
    takes; events written meanwhile wait for the next round, not shipped at once in batches of one or two."""
    async with brain_with_captain(tmp_path, max_audit_request_bytes=4096) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        try:
            link = body.link
            assert link is not None
            await link.register()
            for n in range(12):  # ~1 KB each: three batches under the cap
                body.record_human(action="note", rationale=f"event {n} " + "r" * 800)
            began = body.audit.tail(1)[0].seq
            ship, batches = link.client.ship, list[int]()

            async def ship_and_write(batch: AuditBatch) -> AuditAck:
                if not batches:  # (the round's first request: an agent goes on writing meanwhile)
                    for n in range(3):
                        body.record_human(action="note", rationale=f"later {n}")
                batches.append(len(batch.events))
                return await ship(batch)

            link.client.ship = ship_and_write  # type: ignore[method-assign]
            assert await link.ship_pending(round_only=True) == began
            assert len(batches) >= 3 and sum(batches) == 12, batches
            later = body.audit.tail(1)[0].seq
            assert later == began + 3
            assert await link.ship_pending(round_only=True) == later, "the next round takes them"
            assert sum(batches) == 15
        finally:
            body.close()


def counted_rounds(link: BrainLink) -> list[float]:
    """When each of `link`'s shipping rounds began (`time.monotonic()`), from now on."""
    rounds = list[float]()
    ship_pending = link.ship_pending

    async def counted(*, round_only: bool = False) -> int:
        rounds.append(time.monotonic())
        return await ship_pending(round_only=round_only)

    link.ship_pending = counted  # type: ignore[method-assign]
    return rounds


async def test_a_committed_event_is_shipped_at_the_loops_next_look_round_after_round(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit writer tells the link of each commit from its own thread (`events_committed`, a flag), and the
    shipping loop's next look ships it, round after round. (Until session 21 the writer set the first round's event
    only, bound once, and woke the event loop on every commit for it.)"""
    monkeypatch.setattr(brain_link_module, "SHIP_POLL_S", 0.05)
    monkeypatch.setattr(brain_link_module, "SHIP_EVERY_S", 0.05)  # (three rounds, not three seconds)
    async with brain_with_captain(tmp_path) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        try:
            link = body.link
            assert link is not None
            async with anyio.create_task_group() as tg:
                tg.start_soon(link.run)
                await wait_until(lambda: body.brain_state == "connected")
                for n in range(3):
                    assert await write(body, f"round{n}.txt") == (False, None)
                    seq = body.audit.tail(1)[0].seq
                    await wait_until(lambda seq=seq: link.shipped_through() >= seq, timeout=10)
                tg.cancel_scope.cancel()
        finally:
            body.close()


async def test_commits_wake_no_round_and_a_burst_goes_in_one(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit wakes nothing (no round lands in the calls that made it, where a kill for them would): a burst's
    events wait for the loop's look, and go in one round (here the look is an hour off and the test asks for it)."""
    monkeypatch.setattr(brain_link_module, "SHIP_POLL_S", 3600.0)
    monkeypatch.setattr(brain_link_module, "SHIP_EVERY_S", 0.0)
    async with brain_with_captain(tmp_path) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        try:
            link = body.link
            assert link is not None
            rounds = counted_rounds(link)
            before = 0
            async with anyio.create_task_group() as tg:
                tg.start_soon(link.run)
                await wait_until(lambda: body.brain_state == "connected")
                await wait_until(lambda: len(rounds) >= 1)  # (the first round, as the link comes up)
                await anyio.sleep(0.2)
                before = len(rounds)
                for n in range(3):
                    assert await write(body, f"burst{n}.txt") == (False, None)
                await anyio.sleep(0.3)
                assert len(rounds) == before, "a commit woke a round"
                link.new_events.set()  # (the look, now)
                head = body.audit.tail(1)[0].seq
                await wait_until(lambda: link.shipped_through() >= head)
                tg.cancel_scope.cancel()
            assert len(rounds) == before + 1, "the burst in one round"
        finally:
            body.close()


async def test_an_idle_link_looks_at_the_chain_without_a_round_and_ships_what_another_process_added(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing told, the shipping loop looks every `SHIP_POLL_S` at the chain's head with one read on the event
    loop, and runs a round (worker threads, the brain) only when the chain grew: an event another body process of
    the workspace wrote (here a second body whose link does not run: its writer tells only its own link)."""
    monkeypatch.setattr(brain_link_module, "SHIP_POLL_S", 0.05)
    async with brain_with_captain(tmp_path) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        other = linked_body_again(tmp_path, home, 0, brain.url, brain.tokens["body"])
        try:
            link = body.link
            assert link is not None
            rounds = counted_rounds(link)
            async with anyio.create_task_group() as tg:
                tg.start_soon(link.run)
                await wait_until(lambda: body.brain_state == "connected")
                await wait_until(lambda: len(rounds) >= 1)
                await anyio.sleep(0.1)  # (the first round, as the link comes up, over)
                before = len(rounds)
                await anyio.sleep(0.5)  # (ten looks)
                assert len(rounds) == before, "no round while the chain stood still"
                other.record_human(action="note", rationale="written by another process's body")
                head = other.audit.tail(1)[0].seq
                await wait_until(lambda: link.shipped_through() >= head)
                assert len(rounds) > before
                tg.cancel_scope.cancel()
        finally:
            other.close()
            body.close()


async def test_a_body_moves_to_a_new_token_only_by_a_captains_rebind(tmp_path: Path, home: Path) -> None:
    async with brain_with_captain(tmp_path) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        body_id = body.identity.body_id
        try:
            assert body.link is not None
            await body.link.register()
        finally:
            body.close()
        db = tmp_path / "brain.db"
        new_token = await issue_in(db, "body", "new laptop")
        moved = linked_body_again(tmp_path, home, 0, brain.url, new_token)
        try:
            assert moved.link is not None and moved.identity.body_id == body_id
            with pytest.raises(BrainRejected) as refused:
                await moved.link.register()
            assert (refused.value.status, refused.value.error.code) == (403, "forbidden")

            listed = await anyio.to_thread.run_sync(lambda: run_swarm(home, "brain", "token", "list", "--db", str(db)))
            new_id = next(line.split()[0] for line in listed.stdout.splitlines() if "label=new laptop" in line)
            captain = ["--brain", brain.url, "--token", brain.tokens["captain"]]
            rebound = await anyio.to_thread.run_sync(
                lambda: run_swarm(
                    home, "brain", "body", "rebind", body_id, "--token-id", new_id, "--reason", "new laptop", *captain
                )
            )
            assert rebound.returncode == 0, rebound.stderr
            assert (await moved.link.register()).body_id == body_id
        finally:
            moved.close()


def linked_body_again(tmp_path: Path, home: Path, n: int, url: str, token: str) -> Body:
    """The body of workspace `n` (already made by `linked_body`), started again with another token."""
    settings = BodySettings(
        workspace=(tmp_path / f"ws{n}").resolve(), home=home, config=parse_config({}), brain_url=url, brain_token=token
    )
    return Body(settings)


async def test_a_linked_body_that_never_reached_its_brain_refuses_mutating_calls_until_it_does(
    tmp_path: Path, home: Path
) -> None:
    db, port = tmp_path / "brain.db", _free_port()
    tokens = await _tokens(db)
    url = f"http://127.0.0.1:{port}"
    body = linked_body(tmp_path, home, 0, url, tokens["body"])  # the brain is not up yet
    try:
        assert body.link is not None and body.link.failsafe_s == 10, "well within the failsafe time since start"
        refused = await body.call_tool("write_file", {"path": "a.txt", "content": "y", "rationale": "too early"})
        assert refused.is_error and refused.structured["code"] == "brain_unreachable"
        assert "not been reached" in refused.structured["message"], refused.structured["message"]
        assert not (tmp_path / "ws0" / "a.txt").exists()
        assert not (await body.call_tool("read_text_file", {"path": "f.txt", "rationale": "reads work"})).is_error
        status = await body.call_tool("status", {"rationale": "why refused?"})
        assert (status.structured["brain"], status.structured["kill_switch"]) == ("unreachable", "engaged")

        def recorded() -> bool:  # (written in the link's recorder thread, never on the event loop)
            found = read_link_record(body.paths.link_state)
            return found is not None and found.failsafe

        await wait_until(recorded)
        shown = await anyio.to_thread.run_sync(lambda: run_swarm(home, "status", "--workspace", str(tmp_path / "ws0")))
        assert shown.returncode == 0, shown.stderr
        lines = {
            label.strip(): value.strip() for label, _, value in (x.partition(":") for x in shown.stdout.splitlines())
        }
        assert lines["kill switch"].startswith("ENGAGED (failsafe: the brain has not been reached"), lines
        assert lines["brain"].startswith(f"unreachable to {url} (never heard from"), lines

        async with brain_on(port, db), linked_up(body):
            assert await write(body, "a.txt") == (False, None)
            status = await body.call_tool("status", {"rationale": "now?"})
            assert (status.structured["brain"], status.structured["kill_switch"]) == ("connected", "released")
    finally:
        body.close()


async def test_every_call_one_failsafe_refuses_names_when_it_began(tmp_path: Path, home: Path) -> None:
    db, port = tmp_path / "brain.db", _free_port()
    tokens = await _tokens(db)
    body = linked_body(tmp_path, home, 0, f"http://127.0.0.1:{port}", tokens["body"])
    try:
        assert body.link is not None
        # Before the brain was ever reached: one episode, since the body started.
        assert [await write(body, name) for name in ("a.txt", "b.txt")] == [(True, "brain_unreachable")] * 2
        async with brain_on(port, db):
            await reach_brain(body)
        body.link.failsafe_s = 0  # (the brain is gone: its silence is past the failsafe at once)
        # After it was heard: another episode, since it was last heard.
        assert [await write(body, name) for name in ("c.txt", "d.txt")] == [(True, "brain_unreachable")] * 2
        refusals = [e for e in body.audit.tail(10) if e.code == "brain_unreachable"]
        since = [e.detail["failsafe_since"] for e in refusals]
        assert len(refusals) == 4 and None not in since
        assert since[0] == since[1] and since[2] == since[3] and since[1] < since[2], since
    finally:
        body.close()


async def test_a_linked_body_ignores_task_events_and_still_hears_the_next_kill(tmp_path: Path, home: Path) -> None:
    """`task_available` and `task_cancelled` are for runners: a body's link passes over them (as over any event
    name it does not know) and keeps its stream, so the brain's next kill still reaches it. Heartbeats are a
    minute apart here, so a kill or a resume reaches the body through its stream only."""
    async with brain_with_captain(tmp_path, heartbeat_interval_s=60) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        try:
            assert body.link is not None
            async with anyio.create_task_group() as tg:
                tg.start_soon(body.link.run)
                await brain.captain.post("/v1/kill", json={"reason": "before"})
                await wait_until(lambda: body.kill_switch.state().engaged)
                await brain.captain.post("/v1/resume", json={"reason": "the stream is open"})
                await wait_until(lambda: not body.kill_switch.state().engaged)
                queued = (await brain.captain.post("/v1/tasks", json={"title": "t"})).json()
                took = await body.call_tool("next_task", {"rationale": "work"})
                assert took.structured["task"]["id"] == queued["id"], took.structured
                cancelled = await brain.captain.post(f"/v1/tasks/{queued['id']}/cancel", json={"reason": "dup"})
                assert cancelled.status_code == 200, cancelled.text
                assert await write(body, "after-events.txt") == (False, None)
                await brain.captain.post("/v1/kill", json={"reason": "stop"})
                await wait_until(lambda: body.kill_switch.state().engaged, timeout=5)
                assert await write(body, "killed.txt") == (True, "kill_switch_engaged")
                tg.cancel_scope.cancel()
        finally:
            body.close()


async def test_a_linked_body_registers_its_verification_key_and_attests_what_it_ships(
    tmp_path: Path, home: Path
) -> None:
    """The brain learns the body's key at its first registration (derived from its audit key, never the audit key
    itself) and holds every shipped event attested under it; a registration with another key is refused (409) and the
    body fails closed saying why, until a captain's rebind of the body forgets the key."""
    async with brain_with_captain(tmp_path) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        body_id = body.identity.body_id
        attester = body.audit.attester()
        assert attester is not None
        try:
            # Someone holding the body's token registered the body's id first, with a key of their own.
            squatter = {"body_id": body_id, "workspace": "/w", "hostname": "h", "version": "1", "verify_key": "ab" * 32}
            headers = {"Authorization": f"Bearer {brain.tokens['body']}"}
            assert (await brain.captain.post("/v1/bodies/register", json=squatter, headers=headers)).status_code == 200
            assert body.link is not None
            async with anyio.create_task_group() as tg:
                tg.start_soon(body.link.run)
                await wait_until(lambda: body.brain_state == "refused")
                status = await body.call_tool("status", {"rationale": "why refused?"})
                assert status.structured["kill_switch"] == "engaged"
                tg.cancel_scope.cancel()
            with pytest.raises(BrainRejected) as refused:
                await body.link.register()
            assert (refused.value.status, refused.value.error.code) == (409, "body_key_mismatch")
            assert f"swarm brain body rebind {body_id}" in refused.value.error.message

            db = str(tmp_path / "brain.db")
            listed = await anyio.to_thread.run_sync(lambda: run_swarm(home, "brain", "token", "list", "--db", db))
            token_id = next(line.split()[0] for line in listed.stdout.splitlines() if "role=body" in line)
            captain = ["--brain", brain.url, "--token", brain.tokens["captain"]]
            reset = await anyio.to_thread.run_sync(
                lambda: run_swarm(
                    home, "brain", "body", "rebind", body_id, "--token-id", token_id, "--reason", "key reset", *captain
                )
            )
            assert reset.returncode == 0, reset.stderr
            async with linked_up(body):
                assert await write(body, "after.txt") == (False, None)
                await body.link.ship_pending()
        finally:
            body.close()
        state = await SqliteStateEngine.open(tmp_path / "brain.db")
        try:
            (known,) = [b for b in await state.bodies() if b.body_id == body_id]
            assert known.verify_key == attester.verify_key
            events = await state.audit_events(body_id)
            assert events and all(e.attest == attestation(attester.verify_key, e) for e in events)
        finally:
            await state.close()


async def test_a_kill_on_the_stream_is_obeyed_before_its_record_is_written_and_recorded_after(
    tmp_path: Path, home: Path
) -> None:
    """The record `swarm status` reads is written and synced in a thread of its own: a disk slow to sync it never
    holds up the kill (the next call is refused meanwhile), and the record says killed once written. Heartbeats are
    a minute apart: the kill comes by the stream."""
    async with brain_with_captain(tmp_path, heartbeat_interval_s=60) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        try:
            assert body.link is not None
            link = body.link
            async with anyio.create_task_group() as tg:
                tg.start_soon(link.run)
                await wait_until(lambda: not body.kill_switch.state().engaged)
                disk = threading.Event()
                link._recorder.submit(disk.wait)  # pyright: ignore[reportPrivateUsage]  (a sync that takes its time)
                try:
                    await brain.captain.post("/v1/kill", json={"reason": "stop"})
                    await wait_until(lambda: body.kill_switch.state().engaged, timeout=5)
                    assert await write(body, "killed.txt") == (True, "kill_switch_engaged")
                    record = read_link_record(body.paths.link_state)
                    assert record is not None and not record.brain_kill, "not written yet: the thread is held"
                finally:
                    disk.set()

                def recorded_killed() -> bool:
                    found = read_link_record(body.paths.link_state)
                    return found is not None and found.brain_kill and found.kill_reason == "stop"

                await wait_until(recorded_killed, timeout=5)
                tg.cancel_scope.cancel()
        finally:
            body.close()


async def _listening(link: BrainLink, clock: Clock, seconds: float, *, step: float = 0.2) -> None:
    """Let `seconds` pass on the link's clock in steps its event loop sees, running (no step is a stall)."""
    for _ in range(round(seconds / step)):
        clock.now += step
        await wait_until(lambda: link._ticked >= clock.now)  # pyright: ignore[reportPrivateUsage]


async def test_a_body_whose_own_loop_stood_still_asks_its_brain_again_before_failing_closed(
    tmp_path: Path, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The failsafe counts the brain's silence, not the body's: a body whose event loop stood still past the failsafe
    time (a long synchronous step, a lock held across a slow sync, a starved CPU) has not read what its brain sent
    meanwhile, so it does not fail closed on that alone; it heartbeats at once and goes on. A brain that is really
    silent still trips it, once the body has listened `recheck_s` since it last heard. The link's clock is the test's:
    a stall is time passing while the loop does not run."""
    db, port = tmp_path / "brain.db", _free_port()
    tokens = await _tokens(db)
    clock = Clock()
    body = linked_body(tmp_path, home, 0, f"http://127.0.0.1:{port}", tokens["body"], link_clock=clock)
    assert body.link is not None
    link = body.link
    try:
        async with anyio.create_task_group() as tg:
            async with brain_on(port, db, failsafe_s=1.0):
                tg.start_soon(link.run)
                await wait_until(lambda: body.brain_state == "connected")
                assert (link.failsafe_s, link.recheck_s) == (1.0, 0.5)
                clock.now += 30  # the loop stands still for 30 s: no tick, nothing read from the brain
                assert not body.kill_switch.state().engaged, "its own stall is not the brain's silence"
                stalled_at = clock.now
                await wait_until(lambda: link._last_heard >= stalled_at)  # pyright: ignore[reportPrivateUsage]
                assert await write(body, "busy.txt") == (False, None)
            # The brain is gone. A stall hides nothing for longer than the re-check: then the body fails closed.
            clock.now += 30
            assert not body.kill_switch.state().engaged, "not yet asked again"
            await _listening(link, clock, 0.2)
            assert not body.kill_switch.state().engaged, "listened less than recheck_s since the stall"
            listened = 0.2
            while not body.kill_switch.state().engaged:
                await _listening(link, clock, 0.2)
                listened += 0.2
                # (an answer read late, after the stall, restarts the silence: a failsafe time at most)
                assert listened <= link.failsafe_s + link.recheck_s + 0.2, "a silent brain must trip the failsafe"
            assert await write(body, "silent.txt") == (True, "brain_unreachable")
            # Said once, with what it last heard and how (a silence is explained where the body's stderr goes).
            said = [r.getMessage() for r in caplog.records if "failing closed" in r.getMessage()]
            assert len(said) == 1 and "no word from the brain" in said[0], said
            assert "last heard" in said[0] and "heartbeat " in said[0] and "heartbeat out:" in said[0], said
            clock.now += 30  # a second stall does not hide a silence the body listened to
            assert body.kill_switch.state().engaged
            tg.cancel_scope.cancel()
    finally:
        body.close()


async def test_the_link_hears_its_brain_while_a_slow_disk_holds_its_record_and_its_database(
    tmp_path: Path, home: Path
) -> None:
    """Heartbeats never wait for the link record's write, and the event loop never waits for the state database's
    lock (the audit writer holds it across its syncs) to ship: with both held, as by a disk slow to sync, the body
    goes on heartbeating and hearing its brain, so its failsafe has no silence to count."""
    async with brain_with_captain(tmp_path, heartbeat_interval_s=0.1) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        try:
            assert body.link is not None
            link = body.link
            async with anyio.create_task_group() as tg:
                tg.start_soon(link.run)
                await wait_until(lambda: body.brain_state == "connected")
                disk = threading.Event()
                link._recorder.submit(disk.wait)  # pyright: ignore[reportPrivateUsage]  (a sync that takes its time)
                locked = threading.Event()

                def hold_the_database() -> None:
                    with body.db.read():  # (as the audit writer does while its commit syncs)
                        locked.set()
                        disk.wait(10)

                holder = threading.Thread(target=hold_the_database, daemon=True)
                holder.start()
                try:
                    await wait_until(locked.is_set)
                    await brain.captain.post("/v1/kill", json={"reason": "stop"})  # a change to record, held up
                    await wait_until(lambda: body.kill_switch.state().engaged, timeout=5)
                    link.new_events.set()  # the link ships now: it reads the chain behind the held lock
                    beats: list[str] = []
                    with anyio.fail_after(5):
                        while len(beats) < 4:
                            (seen,) = (await brain.captain.get("/v1/status")).json()["bodies"]
                            if not beats or seen["last_heartbeat"] != beats[-1]:
                                beats.append(seen["last_heartbeat"])
                            await anyio.sleep(0.02)
                    heard = link._last_heard  # pyright: ignore[reportPrivateUsage]
                    await wait_until(lambda: link._last_heard > heard, timeout=5)  # pyright: ignore[reportPrivateUsage]
                    assert holder.is_alive() and not disk.is_set(), "heard while the disk still held both"
                finally:
                    disk.set()
                    await anyio.to_thread.run_sync(holder.join)
                tg.cancel_scope.cancel()
        finally:
            body.close()


class HeldHeartbeat(httpx.AsyncBaseTransport):
    """Real HTTP to the brain, with the answer to the body's first heartbeat held on its way back once the brain has
    given it (a reply slower than the event stream, as on a loaded machine); the next heartbeat is held before it
    is sent, until `go_on`."""

    def __init__(self) -> None:
        self._http = httpx.AsyncHTTPTransport()
        self.answered = anyio.Event()
        self.release = anyio.Event()
        self.next_sent = anyio.Event()
        self.go_on = anyio.Event()
        self._heartbeats = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/heartbeat"):
            return await self._http.handle_async_request(request)
        self._heartbeats += 1
        if self._heartbeats > 1:
            self.next_sent.set()
            await self.go_on.wait()
            return await self._http.handle_async_request(request)
        response = await self._http.handle_async_request(request)
        content = await response.aread()
        self.answered.set()
        await self.release.wait()
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    async def aclose(self) -> None:
        await self._http.aclose()


@pytest.mark.parametrize("in_thread", [True, False], ids=["stream-thread", "stream-on-loop"])
async def test_a_heartbeat_answered_before_the_kill_reached_the_stream_does_not_lift_it(
    tmp_path: Path, home: Path, in_thread: bool
) -> None:
    """The brain answers a heartbeat (not killed), then the kill comes by the stream, then that answer arrives: it
    says nothing of the kill and must not lift it (it did, until the next heartbeat 2 s later: the rare ~2 s trials of
    `bench/bench_kill_fanout.py`). The refusal says how the body heard the kill. Whether the stream is read on its own
    thread (real HTTP: a body's) or on the event loop (an in-process transport's)."""
    async with brain_with_captain(tmp_path, heartbeat_interval_s=0.05) as brain:
        transport = HeldHeartbeat()
        ws = tmp_path / "ws"
        ws.mkdir()
        settings = BodySettings(
            workspace=ws.resolve(),
            home=home,
            config=parse_config({}),
            brain_url=brain.url,
            brain_token=brain.tokens["body"],
        )
        body = Body(settings, brain_transport=transport)
        try:
            assert body.link is not None
            # (the stream's thread speaks real HTTP to the same brain; the heartbeats keep this test's transport)
            body.link.client.events_in_thread = in_thread
            async with anyio.create_task_group() as tg:
                tg.start_soon(body.link.run)
                with anyio.fail_after(10):
                    await transport.answered.wait()  # (the brain said: not killed)
                await brain.captain.post("/v1/kill", json={"reason": "stop"})
                await wait_until(lambda: body.kill_switch.state().engaged, timeout=5)
                transport.release.set()
                with anyio.fail_after(10):
                    await transport.next_sent.wait()  # (the late answer was read before the next heartbeat went out)
                state = body.kill_switch.state()
                assert (state.engaged, state.source, state.reason) == (True, "brain", "stop")
                assert await write(body, "killed.txt") == (True, "kill_switch_engaged")
                (refused,) = [e for e in body.audit.tail(10) if e.code == "kill_switch_engaged"]
                assert refused.detail["kill_heard"]["by"] == "stream"
                transport.go_on.set()
                await brain.captain.post("/v1/resume", json={"reason": "go on"})
                await wait_until(lambda: not body.kill_switch.state().engaged, timeout=5)
                tg.cancel_scope.cancel()
        finally:
            body.close()
