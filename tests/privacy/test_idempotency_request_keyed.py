"""The digest of the task request an `Idempotency-Key` came with is kept keyed too (#21): an HMAC of its SHA-256
under the brain's key store secret, so a guessable request (a templated title naming an email) is not confirmed by
hashing candidates against the database or a backup. A row kept bare before is still honoured (the same request
replayed under its key still matches it, another is still refused) until `swarm privacy migrate --brain` keys it,
in the one transaction of the records' migration (a failure half-way keeps nothing). Both state engines, and a
live brain on a real SQLite file."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from brain_server.exceptions import KeyReused
from brain_server.privacy import KEYED, RecordProtection, keyed_request_digest, keyed_task_key
from brain_server.state import LogEntry, MemoryStateEngine, SqliteStateEngine, StateEngine, TaskKey
from shared_protocol.brain import Task, TaskRequest
from shared_protocol.privacy import MemorySubjectKeys, PrivacyConfig, Protector
from tests.brain.helpers import LiveBrain
from tests.brain.state.records import NOW, entry

from .plant import leaks, plant

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "sqlite"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateEngine]:
    state: StateEngine = (
        MemoryStateEngine() if request.param == "memory" else await SqliteStateEngine.open(tmp_path / "brain.db")
    )
    try:
        yield state
    finally:
        await state.close()


def queued(n: int, title: str) -> Task:
    return Task(
        id=f"task_{n}", title=title, description="", value_usd=1, state="queued", created_at=NOW, created_by="c"
    )


def digest_of(title: str) -> str:
    return hashlib.sha256(TaskRequest(title=title, value_usd=1).model_dump_json().encode()).hexdigest()


def sent_now(protector: Protector, key: str, title: str) -> TaskKey:
    """The `TaskKey` the brain builds for a request now (`Brain.queue_task`)."""
    return TaskKey(
        token_id="tok_1",
        key=keyed_task_key(protector, "tok_1", key),
        request_sha256=keyed_request_digest(protector, digest_of(title)),
        sent=key,
        request_bare=digest_of(title),
    )


def kept_only(protector: Protector, key: str, title: str) -> TaskKey:
    """A request that matches only a row kept keyed (no bare forms to fall back on)."""
    return TaskKey(
        token_id="tok_1",
        key=keyed_task_key(protector, "tok_1", key),
        request_sha256=keyed_request_digest(protector, digest_of(title)),
    )


class _FailsOnRequests(RecordProtection):
    """A migration that fails after it rewrote the tasks and the rest, at the request digests."""

    def task_request(self, digest: str) -> str | None:
        raise RuntimeError("disk gone")


async def test_a_digest_kept_bare_before_is_honoured_then_keyed_by_the_migration(engine: StateEngine) -> None:
    p = plant()
    protector = Protector(PrivacyConfig(), MemorySubjectKeys())
    title = f"refund {p.email}"
    # Rows as brains before kept them: key and digest as sent; and the key keyed but the digest bare.
    before = TaskKey(token_id="tok_1", key="k-old", request_sha256=digest_of(title))
    first = await engine.insert_task(queued(1, title), entry("task_create"), key=before)
    half = TaskKey(token_id="tok_1", key=keyed_task_key(protector, "tok_1", "k-half"), request_sha256=digest_of(title))
    second = await engine.insert_task(queued(2, title), entry("task_create"), key=half)

    for key, task in (("k-old", first), ("k-half", second)):
        assert (
            await engine.insert_task(queued(9, title), entry("task_create"), key=sent_now(protector, key, title))
            == task
        )
        with pytest.raises(KeyReused):
            await engine.insert_task(queued(9, "x"), entry("task_create"), key=sent_now(protector, key, "another"))

    # (kept bare: a request with no bare digest to compare does not match it)
    with pytest.raises(KeyReused):
        await engine.insert_task(queued(9, title), entry("task_create"), key=kept_only(protector, "k-half", title))
    log = LogEntry(at=NOW, action="privacy_migrate", by="human:c", role="captain")
    with pytest.raises(RuntimeError, match="disk gone"):
        await engine.rewrite_records(_FailsOnRequests(protector), log)
    stored = await engine.task("task_1")  # (one transaction: nothing of it was kept)
    assert stored is not None and stored.title == title
    with pytest.raises(KeyReused):
        await engine.insert_task(queued(9, title), entry("task_create"), key=kept_only(protector, "k-half", title))

    changed = await engine.rewrite_records(RecordProtection(protector), log)
    assert changed.get("task_keys") == 2, changed
    for key, task in (("k-old", first), ("k-half", second)):  # (the task's text is protected now: its id compared)
        for replay in (kept_only(protector, key, title), sent_now(protector, key, title)):
            assert (await engine.insert_task(queued(9, title), entry("task_create"), key=replay)).id == task.id
        with pytest.raises(KeyReused):
            await engine.insert_task(queued(9, "x"), entry("task_create"), key=sent_now(protector, key, "another"))
    assert await engine.task("task_9") is None
    assert "task_keys" not in await engine.rewrite_records(RecordProtection(protector), log)  # (nothing left)


async def test_the_brain_keeps_the_digest_keyed_and_its_migration_keys_one_kept_bare(live: LiveBrain) -> None:
    p = plant()
    task: dict[str, Any] = {"title": f"refund {p.email}", "value_usd": 5}
    bare = hashlib.sha256(TaskRequest.model_validate(task).model_dump_json().encode()).hexdigest()
    captain = {"Authorization": f"Bearer {live.tokens['captain']}"}

    def digests() -> list[str]:
        with closing(sqlite3.connect(live.db)) as conn:
            return [str(d) for (d,) in conn.execute("SELECT request_sha256 FROM task_keys")]

    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:

        async def create(key: str, body: dict[str, Any]) -> httpx.Response:
            return await http.post("/v1/tasks", json=body, headers={**captain, "Idempotency-Key": key})

        first = await create("refund-1", task)
        assert first.status_code == 201, first.text
        (kept,) = digests()
        assert kept.startswith(KEYED) and bare not in kept

        def keep_bare() -> None:  # (a row as a brain before this kept it; off the loop the live brain runs on)
            with closing(sqlite3.connect(live.db, timeout=10)) as conn:
                conn.execute("UPDATE task_keys SET request_sha256 = ?", (bare,))
                conn.commit()

        await anyio.to_thread.run_sync(keep_bare)
        again = await create("refund-1", task)
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"], again.text
        assert (await create("refund-1", {**task, "title": "another"})).status_code == 409
        assert digests() == [bare]  # (compared, not rewritten: that is migrate's)

        migrated = await http.post("/v1/privacy/migrate", headers=captain)
        assert migrated.status_code == 200, migrated.text
        assert migrated.json()["records"].get("task_keys") == 1
        assert digests() == [kept]  # (the same HMAC a new request gets)
        again = await create("refund-1", task)
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"], again.text
        assert (await create("refund-1", {**task, "title": "another"})).status_code == 409
    assert leaks([live.db.parent], [bare]) == []
