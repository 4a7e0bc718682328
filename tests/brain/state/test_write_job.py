"""A claim as one job on the SQLite writer's thread (`_write_job`), inside the group commit: claims arriving together
share a commit, each gets its own task and returns only once committed, the oldest waiting claim is served first, a
claim that fails fails alone, and the kill switch and a pause refuse claims in the claim's own transaction."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from brain_server import SqliteStateEngine
from brain_server.state import ClaimGrant, LogEntry, StateEngine
from shared_protocol.brain import AgentPause, KillState, Task

from .records import NOW, entry, task

pytestmark = pytest.mark.anyio


def _grant(agent: str, *, body_id: str = "b") -> ClaimGrant:
    return ClaimGrant(
        body_id=body_id,
        agent=agent,
        claim_token=f"clm_{agent}",
        at=NOW,
        lease_expires=NOW + timedelta(minutes=5),
    )


def _claim_log(task: Task) -> LogEntry:
    return entry("task_claim")


def _claimed_rows(path: Path) -> dict[str, str]:
    """Task id → claiming agent, as another connection (another process) sees them committed."""
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT id, claimed_agent FROM tasks WHERE state = 'claimed'").fetchall())
    finally:
        conn.close()


async def _open(tmp_path: Path, tasks: int) -> tuple[SqliteStateEngine, Path]:
    path = tmp_path / "brain.db"
    state = await SqliteStateEngine.open(path)
    for n in range(tasks):
        await state.insert_task(task(n, value_usd=float(tasks - n)), entry("task_create"))
    return state, path


@pytest.mark.sqlite
async def test_a_write_job_runs_whole_on_the_writer_connections_thread(tmp_path: Path) -> None:
    """The one private aiosqlite call the engine relies on (`on_thread`) still runs a job on that thread."""
    state, path = await _open(tmp_path, 0)
    try:
        seen: list[int] = []

        def job(conn: sqlite3.Connection) -> int:
            seen.append(threading.get_ident())
            conn.execute("INSERT INTO brain_log (at, action, by, reason, detail) VALUES ('t', 'kill', 'x', 'y', '{}')")
            return conn.execute("SELECT COUNT(*) FROM brain_log WHERE by = 'x'").fetchone()[0]

        assert await state._write_job(job) == 1  # pyright: ignore[reportPrivateUsage]
        assert seen and seen[0] != threading.get_ident(), "the job ran on the event loop's thread"
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT COUNT(*) FROM brain_log WHERE by = 'x'").fetchone()[0] == 1, "committed"
        conn.close()
    finally:
        await state.close()


@pytest.mark.sqlite
async def test_a_lone_claim_is_one_round_trip_to_the_writer_and_committed_when_it_returns(tmp_path: Path) -> None:
    """A claim with no writer behind it opens its transaction, claims and commits in one job on the writer's thread
    (a round trip each for BEGIN and COMMIT cost the event loop more than the claim): committed when it returns."""
    state, path = await _open(tmp_path, 2)
    writer = state._writer  # pyright: ignore[reportPrivateUsage]
    real = writer._execute  # pyright: ignore[reportPrivateUsage, reportUnknownMemberType, reportUnknownVariableType]
    trips: list[object] = []
    statements: list[str] = []

    async def counted(fn: object, *args: object, **kwargs: object) -> object:
        trips.append(fn)
        return await real(fn, *args, **kwargs)  # pyright: ignore[reportUnknownVariableType]

    writer._execute = counted  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue]
    await writer.set_trace_callback(statements.append)  # pyright: ignore[reportUnknownMemberType]
    trips.clear()
    try:
        claimed = await state.claim_task(_grant("a"), _claim_log)
        assert claimed is not None and claimed.id == "task_0"
        assert len(trips) == 1, f"{len(trips)} round trips to the writer's thread for one claim"
        assert [s.split()[0].upper() for s in statements if s.split()[0].upper() in ("BEGIN", "COMMIT")] == [
            "BEGIN",
            "COMMIT",
        ]
        assert _claimed_rows(path) == {"task_0": "a"}, "the claim returned before it was committed"
    finally:
        await state.close()


@pytest.mark.sqlite
async def test_claims_arriving_together_share_commits_and_each_returns_its_own_committed_task(
    tmp_path: Path,
) -> None:
    state, path = await _open(tmp_path, 32)
    commits: list[str] = []

    def trace(sql: str) -> None:
        if sql.strip().upper() == "COMMIT":
            commits.append(sql)

    await state._writer.set_trace_callback(trace)  # pyright: ignore[reportPrivateUsage, reportUnknownMemberType]
    won: dict[str, str] = {}
    unseen: list[str] = []
    try:

        async def claimer(agent: str) -> None:
            while (claimed := await state.claim_task(_grant(agent), _claim_log)) is not None:
                assert claimed.id not in won, f"{claimed.id} claimed twice"
                won[claimed.id] = agent
                if (await anyio.to_thread.run_sync(_claimed_rows, path)).get(claimed.id) != agent:
                    unseen.append(claimed.id)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for n in range(8):
                    group.start_soon(claimer, f"a{n}")
        assert unseen == [], "a claim returned before it was committed"
        assert won == _claimed_rows(path)
        assert len(won) == 32
        assert len(commits) < 32 + 8, f"{len(commits)} commits for 40 claims: none shared"
    finally:
        await state.close()


@pytest.mark.sqlite
async def test_the_oldest_waiting_claim_is_served_first(tmp_path: Path) -> None:
    """Claims queued at once are served in the order they arrived: the first gets the most valuable task."""
    state, _ = await _open(tmp_path, 8)
    got: dict[int, str] = {}
    try:

        async def claimer(n: int) -> None:
            claimed = await state.claim_task(_grant(f"a{n}"), _claim_log)
            assert claimed is not None
            got[n] = claimed.id

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for n in range(8):
                    group.start_soon(claimer, n)
        assert got == {n: f"task_{n}" for n in range(8)}, "task_0 is the most valuable, task_7 the least"
    finally:
        await state.close()


@pytest.mark.sqlite
async def test_a_claim_that_fails_in_a_shared_transaction_fails_alone(tmp_path: Path) -> None:
    """One claim's job raises (here its log line cannot be made) among claims sharing its transaction: its task
    stays queued, the others are claimed and committed."""
    state, path = await _open(tmp_path, 6)
    failed: list[BaseException] = []
    won: dict[str, str] = {}

    def broken_log(task: Task) -> LogEntry:
        raise RuntimeError("no log line")

    try:

        async def claimer(n: int) -> None:
            try:
                claimed = await state.claim_task(_grant(f"a{n}"), broken_log if n == 2 else _claim_log)
            except RuntimeError as exc:
                failed.append(exc)
                return
            assert claimed is not None
            won[claimed.id] = f"a{n}"

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for n in range(5):
                    group.start_soon(claimer, n)
        assert len(failed) == 1
        assert _claimed_rows(path) == won
        assert len(won) == 4
        queued = {t.id for t in await state.tasks(state="queued")}
        assert len(queued) == 2, "the failed claim's task and the one nobody asked for are still queued"
        conn = sqlite3.connect(path)
        logged = conn.execute("SELECT COUNT(*) FROM brain_log WHERE action = 'task_claim'").fetchone()[0]
        conn.close()
        assert logged == 4, "the failed claim's writes went with it, the others' stayed"
    finally:
        await state.close()


async def test_the_kill_switch_and_a_pause_refuse_a_claim_in_its_own_transaction(engine: StateEngine) -> None:
    await engine.insert_task(task(0), entry("task_create"))
    await engine.set_kill_state(KillState(engaged=True, reason="stop", by="c", at=NOW), entry("kill"))
    assert await engine.claim_task(_grant("a"), _claim_log) is None
    await engine.set_kill_state(KillState(engaged=False, reason="go", by="c", at=NOW), entry("resume"))
    pause = AgentPause(agent="paused", reason="r", by="c", source="captain", at=NOW)
    assert await engine.pause_agent(pause, entry("agent_pause"))
    assert await engine.claim_task(_grant("paused"), _claim_log) is None
    assert [t.id for t in await engine.tasks(state="queued")] == ["task_0"], "nothing was claimed"
    claimed = await engine.claim_task(_grant("other"), _claim_log)
    assert claimed is not None and claimed.id == "task_0", "another agent's claim still wins"


@pytest.mark.sqlite
async def test_claims_queued_behind_a_kill_in_the_same_transaction_are_refused(tmp_path: Path) -> None:
    """A kill written just before claims that share its transaction refuses them, before the kill is committed:
    a claim arriving after the kill never wins a task."""
    state, path = await _open(tmp_path, 4)
    results: list[Task | None] = []
    try:

        async def kill() -> None:
            await state.set_kill_state(KillState(engaged=True, reason="stop", by="c", at=NOW), entry("kill"))

        async def claimer(n: int) -> None:
            results.append(await state.claim_task(_grant(f"a{n}"), _claim_log))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(kill)
                for n in range(4):
                    group.start_soon(claimer, n)
        assert results == [None] * 4
        assert _claimed_rows(path) == {}
    finally:
        await state.close()
