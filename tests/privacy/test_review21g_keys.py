"""Review 21g of #21: the keyed request digest and `Idempotency-Key` when the brain's key store is gone."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from brain_server import BrainSettings
from brain_server.state import sqlite_url
from shared_protocol.privacy import KEY_STORE_FILE
from tests.brain.helpers import live_brain
from tests.cli.inprocess import swarm_on

pytestmark = pytest.mark.anyio

_TASK = {"title": "write the refund note", "value_usd": 5}


def _lose_key_store(state: Path) -> None:
    for leftover in state.glob(f"{KEY_STORE_FILE}*"):
        leftover.unlink()


async def test_a_retry_after_the_key_store_is_lost_is_no_silent_duplicate(tmp_path: Path) -> None:
    """Was a hole (low), fixed. `POST /v1/tasks` with an `Idempotency-Key`, then the brain restarts without its key
    store (kept out of backups by design, so a brain restored from one, or a disk lost beside the database, has
    none): the store is made anew with a new secret, the kept `hmac ...` key no longer matches, and the client's
    retry of the same request under the same key made a second task (201), silently. Fixed: the database keeps a
    check value of the secret the keys are under (`task_key_secret`, brain schema v26); while the key store does not
    produce it, a request with an `Idempotency-Key` is refused (503 `key_store_replaced`) and writes nothing, one
    without is taken; the old store put back matches again, and `swarm brain key-store accept` takes the new one
    (a retry of an earlier request is then a new task, as the command says)."""
    state = tmp_path / "brain-state"
    state.mkdir()
    db = state / "brain.db"
    settings = BrainSettings(database_url=sqlite_url(db), keepalive_s=0.2)
    home = tmp_path / "home"
    captain = ""

    @asynccontextmanager
    async def brain() -> AsyncGenerator[Callable[[str | None], Awaitable[httpx.Response]]]:
        nonlocal captain
        async with live_brain(settings) as live, httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            captain = captain or live.tokens["captain"]  # (the same client every time)

            async def post(key: str | None) -> httpx.Response:
                headers = {"Authorization": f"Bearer {captain}"} | ({} if key is None else {"Idempotency-Key": key})
                return await http.post("/v1/tasks", json=_TASK, headers=headers)

            yield post

    def tasks() -> int:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT count(*) FROM tasks").fetchone()[0])

    async with brain() as post:
        first = await post("refund-42")
        assert first.status_code == 201, first.text
    shutil.copytree(state, tmp_path / "kept", ignore=shutil.ignore_patterns("brain.db*"))  # (its WAL too, if any)
    _lose_key_store(state)

    async with brain() as post:
        retried = await post("refund-42")
        assert (retried.status_code, retried.json()["code"]) == (503, "key_store_replaced"), retried.text
        assert "key-store accept" in retried.json()["message"]
        assert tasks() == 1, "the refused request wrote nothing"
        assert (await post(None)).status_code == 201  # (one without the header is taken meanwhile)

    _lose_key_store(state)  # the old store put back: the retry is recognised again
    for kept in (tmp_path / "kept").iterdir():
        shutil.copy(kept, state / kept.name)
    async with brain() as post:
        again = await post("refund-42")
        assert (again.status_code, again.json()["id"]) == (200, first.json()["id"]), again.text

    _lose_key_store(state)  # lost for good: a human accepts the new store, beside the serving brain
    async with brain() as post:
        assert (await post("refund-42")).status_code == 503
        code, out, err = await swarm_on(
            None, "brain", "key-store", "accept", "--db", str(db), "--reason", "disk lost", home=home
        )
        assert code == 0 and "the 1 Idempotency-Keys kept before" in out, (out, err)
        assert tasks() == 2
        accepted = await post("refund-42")
        assert accepted.status_code == 201 and accepted.json()["id"] != first.json()["id"], accepted.text
        assert (await post("refund-42")).json()["id"] == accepted.json()["id"]
    code, out, _ = await swarm_on(None, "brain", "key-store", "accept", "--db", str(db), "--reason", "x", home=home)
    assert code == 0 and "nothing changed" in out
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM brain_log WHERE action = 'key_store_accept'").fetchone()[0] == 1
