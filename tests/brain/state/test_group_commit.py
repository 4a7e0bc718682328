"""The SQLite engine's group commit: writers queued behind one another share one transaction and one commit, each
in its own savepoint, and none returns before its work is committed (what a reply promises)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from brain_server import SqliteStateEngine
from brain_server.state import ClaimGrant

from .records import NOW, entry, task

pytestmark = [pytest.mark.anyio, pytest.mark.sqlite]


def _committed_ids(path: Path) -> set[str]:
    """Task ids another connection (another process's view) sees as committed."""
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM tasks")}
    finally:
        conn.close()


async def test_concurrent_writers_share_commits_and_each_returns_committed(tmp_path: Path) -> None:
    path = tmp_path / "brain.db"
    state = await SqliteStateEngine.open(path)
    commits: list[str] = []

    def trace(sql: str) -> None:
        if sql.strip().upper() == "COMMIT":
            commits.append(sql)

    await state._writer.set_trace_callback(trace)  # pyright: ignore[reportPrivateUsage, reportUnknownMemberType]
    unseen: list[str] = []
    try:

        async def writer(n: int) -> None:
            await state.insert_task(task(n), entry("task_create"))
            if f"task_{n}" not in await anyio.to_thread.run_sync(_committed_ids, path):
                unseen.append(f"task_{n}")

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for n in range(40):
                    group.start_soon(writer, n)
        assert unseen == [], "a writer returned before its write was committed"
        assert _committed_ids(path) == {f"task_{n}" for n in range(40)}
        assert 1 <= len(commits) < 40, f"{len(commits)} commits for 40 concurrent writers: nothing was shared"
    finally:
        await state.close()


async def test_a_writer_that_fails_loses_only_its_own_work(tmp_path: Path) -> None:
    """Inserting a task that exists fails (a constraint) in the middle of a burst: the others are kept."""
    path = tmp_path / "brain.db"
    state = await SqliteStateEngine.open(path)
    try:
        await state.insert_task(task(0), entry("task_create"))
        failed: list[BaseException] = []

        async def writer(n: int) -> None:
            try:
                await state.insert_task(task(n), entry("task_create"))
            except sqlite3.IntegrityError as exc:
                failed.append(exc)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for n in (1, 2, 0, 3, 4):  # (task 0 again, between the others)
                    group.start_soon(writer, n)
        assert len(failed) == 1, failed
        assert _committed_ids(path) == {f"task_{n}" for n in range(5)}
        log = sqlite3.connect(path).execute("SELECT COUNT(*) FROM brain_log WHERE action = 'task_create'").fetchone()
        assert log[0] == 5, "the failed writer's log entry went with its work, the others' stayed"
    finally:
        await state.close()


async def test_claims_in_one_batch_still_take_distinct_tasks(tmp_path: Path) -> None:
    path = tmp_path / "brain.db"
    state = await SqliteStateEngine.open(path)
    try:
        for n in range(24):
            await state.insert_task(task(n), entry("task_create"))
        won: list[str] = []

        async def claimer(agent: str) -> None:
            while True:
                grant = ClaimGrant(
                    body_id="b",
                    agent=agent,
                    claim_token=f"clm_{agent}",
                    at=NOW,
                    lease_expires=NOW + timedelta(minutes=5),
                )
                claimed = await state.claim_task(grant, lambda t: entry("task_claim"))
                if claimed is None:
                    return
                won.append(claimed.id)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for n in range(8):
                    group.start_soon(claimer, f"a{n}")
        assert sorted(won) == sorted(f"task_{n}" for n in range(24))
    finally:
        await state.close()


async def test_closing_commits_the_writers_waiting_for_their_commit(tmp_path: Path) -> None:
    """A close queued behind a burst of writers ends their shared transaction first: every writer that returned is
    committed, and none is left waiting on a commit that would never come."""
    path = tmp_path / "brain.db"
    state = await SqliteStateEngine.open(path)
    done: list[str] = []

    async def writer(n: int) -> None:
        await state.insert_task(task(n), entry("task_create"))
        done.append(f"task_{n}")

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for n in range(10):
                group.start_soon(writer, n)
            await anyio.sleep(0)
            group.start_soon(state.close)
    assert done, "the writers queued before the close ran"
    assert set(done) <= _committed_ids(path)
