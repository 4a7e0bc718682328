# pyright: strict
"""The brain's start-up check of its key store when its `Idempotency-Key`s were kept before brain schema v26 (no
check value of the store they are under is kept yet): the store it has is pinned only if it can be theirs, else a
keyed request is refused (503 `key_store_replaced`) until `swarm brain key-store accept`. A live brain on 127.0.0.1,
its SQLite file and key store, the real CLI in process."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from brain_server import BrainSettings
from brain_server.privacy import key_store_check, key_store_holds, key_store_mismatch, keyed_request_digest
from brain_server.state import KEY_STORE_UNVERIFIED, KeptKeys, KeptRequest, sqlite_url
from shared_protocol.brain import Task, TaskRequest
from shared_protocol.privacy import KEY_STORE_FILE, PrivacyConfig, Protector, SqliteSubjectKeys
from tests.brain.helpers import live_brain
from tests.cli.inprocess import swarm_on

pytestmark = pytest.mark.anyio

_PLAIN = {"title": "write the refund note", "value_usd": 5}
_PERSONAL = {"title": "write the refund note for alice@example.com", "value_usd": 5}

Post = Callable[[str | None], Awaitable[httpx.Response]]


@asynccontextmanager
async def _brain(settings: BrainSettings, tokens: dict[str, str], task: dict[str, Any]) -> AsyncGenerator[Post]:
    async with live_brain(settings) as live, httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        captain = tokens.setdefault("captain", live.tokens["captain"])  # (the same client every time)

        async def post(key: str | None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {captain}"} | ({} if key is None else {"Idempotency-Key": key})
            return await http.post("/v1/tasks", json=task, headers=headers)

        yield post


def _to_v25(db: Path) -> None:
    """The database as a brain of before v26 kept it (v25 made from v26 by dropping the table)."""
    with closing(sqlite3.connect(db)) as conn:
        conn.executescript("DROP TABLE task_key_secret; PRAGMA user_version = 25;")


def _kept_check(db: Path) -> str | None:
    with closing(sqlite3.connect(db)) as conn:
        row = conn.execute("SELECT check_value FROM task_key_secret").fetchone()
    return None if row is None else str(row[0])


def _store_check(state: Path) -> str:
    keys = SqliteSubjectKeys(state / KEY_STORE_FILE)
    try:
        return key_store_check(Protector(PrivacyConfig(), keys))
    finally:
        keys.close()


@pytest.mark.parametrize("task", [_PLAIN, _PERSONAL], ids=["plain", "personal"])
async def test_an_upgrade_to_v26_with_its_own_key_store_pins_it_silently(tmp_path: Path, task: dict[str, Any]) -> None:
    """Its kept keys still match: the retry of a request sent before the upgrade is recognised (200, the same task),
    and the check value kept is this store's (none of the refusal's)."""
    state = tmp_path / "state"
    state.mkdir()
    db = state / "brain.db"
    settings = BrainSettings(database_url=sqlite_url(db), keepalive_s=0.2)
    tokens: dict[str, str] = {}
    async with _brain(settings, tokens, task) as post:
        first = await post("refund-42")
        assert first.status_code == 201, first.text
    if task is _PERSONAL:
        with closing(sqlite3.connect(db)) as conn:
            assert conn.execute("SELECT count(*) FROM tasks WHERE title LIKE '%[pii:email:s%'").fetchone()[0] == 1
    _to_v25(db)
    async with _brain(settings, tokens, task) as post:
        assert _kept_check(db) == _store_check(state)
        retried = await post("refund-42")
        assert (retried.status_code, retried.json()["id"]) == (200, first.json()["id"]), retried.text
        assert (await post("refund-43")).status_code == 201


async def test_an_upgrade_to_v26_with_a_key_store_made_at_that_start_refuses_keyed_requests_until_accepted(
    tmp_path: Path,
) -> None:
    """The store was lost before the upgrade and made anew at its start: no kept key can be under it. Keyed requests
    are refused (503, nothing written) as with a replaced store, one without a key is taken, and `key-store accept`
    takes the new store (a retry is then a new task, as the command says)."""
    state = tmp_path / "state"
    state.mkdir()
    db = state / "brain.db"
    settings = BrainSettings(database_url=sqlite_url(db), keepalive_s=0.2)
    tokens: dict[str, str] = {}
    async with _brain(settings, tokens, _PLAIN) as post:
        assert (await post("refund-42")).status_code == 201
    _to_v25(db)
    for leftover in state.glob(f"{KEY_STORE_FILE}*"):
        leftover.unlink()
    async with _brain(settings, tokens, _PLAIN) as post:
        assert _kept_check(db) == KEY_STORE_UNVERIFIED
        for key in ("refund-42", "refund-43"):
            refused = await post(key)
            assert (refused.status_code, refused.json()["code"]) == (503, "key_store_replaced"), refused.text
        assert (await post(None)).status_code == 201
        code, out, err = await swarm_on(
            None, "brain", "key-store", "accept", "--db", str(db), "--reason", "disk lost", home=tmp_path / "h"
        )
        assert code == 0, (out, err)
        assert (await post("refund-42")).status_code == 201
    assert _kept_check(db) == _store_check(state)
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 3


async def test_an_upgrade_to_v26_with_another_key_store_that_cannot_decrypt_its_tasks_is_refused(
    tmp_path: Path,
) -> None:
    """Another store, made before this start (a wrong `privacy_key_store`, a store of another brain put back): it
    holds none of the keys the keyed tasks' personal data is encrypted under, so it is not theirs: refused."""
    state = tmp_path / "state"
    state.mkdir()
    db = state / "brain.db"
    settings = BrainSettings(database_url=sqlite_url(db), keepalive_s=0.2)
    tokens: dict[str, str] = {}
    async with _brain(settings, tokens, _PERSONAL) as post:
        assert (await post("refund-42")).status_code == 201
    _to_v25(db)
    other = tmp_path / "other"
    other.mkdir()
    SqliteSubjectKeys(other / KEY_STORE_FILE).close()
    for leftover in state.glob(f"{KEY_STORE_FILE}*"):
        leftover.unlink()
    shutil.copy(other / KEY_STORE_FILE, state / KEY_STORE_FILE)
    async with _brain(settings, tokens, _PERSONAL) as post:
        refused = await post("refund-42")
        assert (refused.status_code, refused.json()["code"]) == (503, "key_store_replaced"), refused.text
    assert _kept_check(db) == KEY_STORE_UNVERIFIED


def test_a_store_is_taken_as_the_kept_keys_only_when_nothing_it_holds_says_otherwise(tmp_path: Path) -> None:
    """Made at this open: never. Else: when one of the kept tasks' subjects has its key in it; when every subject
    found was erased since, or none is found, nothing can tell and it is taken."""
    path = tmp_path / KEY_STORE_FILE
    made = SqliteSubjectKeys(path)
    try:
        assert not key_store_holds(Protector(PrivacyConfig(), made), KeptKeys(keys=1, texts=[], erased=frozenset()))
        text = Protector(PrivacyConfig(), made).protect("mail alice@example.com")
    finally:
        made.close()
    elsewhere = SqliteSubjectKeys(tmp_path / "other.db")
    try:
        foreign = Protector(PrivacyConfig(), elsewhere).protect("mail bob@example.com")
    finally:
        elsewhere.close()
    reopened = SqliteSubjectKeys(path)
    try:
        protector = Protector(PrivacyConfig(), reopened)
        subject = reopened.find("email", "alice@example.com")
        assert subject is not None and subject in text
        assert not reopened.made

        def holds(texts: list[str], erased: frozenset[str] = frozenset()) -> bool:
            return key_store_holds(protector, KeptKeys(keys=1, texts=texts, erased=erased))

        assert holds([]) and holds([text]) and holds([foreign, text])
        assert not holds([foreign])
        foreign_subject = foreign.split(":")[2]
        assert holds([foreign], frozenset({foreign_subject}))
    finally:
        reopened.close()


def _kept(protector: Protector, request: TaskRequest) -> KeptRequest:
    """`request` kept as the brain keeps a keyed one: its task protected, its digest keyed, under `protector`'s
    store."""
    stored_by = protector
    task = Task(
        id="task_1",
        title=stored_by.protect(request.title),
        description=stored_by.protect(request.description),
        value_usd=request.value_usd,
        state="queued",
        created_at=datetime.now(UTC),
        created_by="captain-1",
        acceptance=stored_by.protect(request.acceptance),
        repo=stored_by.protect(request.repo),
        acceptance_inputs=None
        if request.acceptance_inputs is None
        else [stored_by.protect(p) for p in request.acceptance_inputs],
        setup=stored_by.protect(request.setup),
    )
    digest = hashlib.sha256(request.model_dump_json().encode()).hexdigest()
    return KeptRequest(request_sha256=keyed_request_digest(protector, digest), task=task)


def test_a_request_digest_read_back_tells_the_store_whatever_tokens_its_task_quotes(tmp_path: Path) -> None:
    """The store whose secret keyed a kept request digest is theirs: read back with its own personal data revealed,
    a token it never made (forged, a body's) or one of its own kept as sent; another store (not made at this open)
    keys none, and says so; a request holding a value of a subject erased since cannot be read back, and the token
    rule decides."""
    stores = [SqliteSubjectKeys(tmp_path / name) for name in ("ours.db", "other.db", "body.db")]
    try:
        ours, _, body = (Protector(PrivacyConfig(), keys) for keys in stores)
        own_token = ours.protect("mail carol@example.com")
        requests = [
            TaskRequest(title="refund alice@example.com", description="call +1 202 555 0147", value_usd=5),
            TaskRequest(title="parse [pii:email:s0123456789abcdef:QUFBQUFBQUE] tokens"),
            TaskRequest(title=f"quote {body.protect('bob@example.com')}", repo="/srv/dave@example.com"),
            TaskRequest(title=f"pasted {own_token}", acceptance_inputs=["tests/*.py", "eve@example.com.txt"]),
        ]
        reopened = [SqliteSubjectKeys(tmp_path / name) for name in ("ours.db", "other.db")]
        try:
            ours_again, other_again = (Protector(PrivacyConfig(), keys) for keys in reopened)
            for request in requests:
                kept = KeptKeys(keys=1, texts=[], erased=frozenset(), requests=[_kept(ours, request)])
                assert key_store_mismatch(ours_again, kept) is None, request
                assert key_store_mismatch(other_again, kept) is not None, request
            erased = _kept(ours, requests[0])
            subject = erased.task.title.split(":")[2]
            gone = KeptKeys(keys=1, texts=[erased.task.title], erased=frozenset({subject}), requests=[erased])
            assert key_store_mismatch(other_again, gone) is None  # (nothing left to tell by: taken)
        finally:
            for keys in reopened:
                keys.close()
    finally:
        for keys in stores:
            keys.close()
