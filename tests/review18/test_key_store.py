# pyright: strict
"""Review 18 of the brain's key-store check (brain schema v26): a replaced key store refuses requests with an
`Idempotency-Key` (503 key_store_replaced) until `swarm brain key-store accept --reason`. A live brain on
127.0.0.1, its SQLite file, the real CLI in process."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from brain_server import BrainSettings
from brain_server.state import sqlite_url
from shared_protocol.privacy import KEY_STORE_FILE
from tests.brain.helpers import live_brain
from tests.cli.inprocess import swarm_on

pytestmark = pytest.mark.anyio

_TASK = {"title": "write the refund note", "value_usd": 5}

Post = Callable[[str | None], Awaitable[httpx.Response]]


def _lose_key_store(state: Path) -> None:
    for leftover in state.glob(f"{KEY_STORE_FILE}*"):
        leftover.unlink()


@asynccontextmanager
async def _brain(settings: BrainSettings, tokens: dict[str, str]) -> AsyncGenerator[Post]:
    async with live_brain(settings) as live, httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        captain = tokens.setdefault("captain", live.tokens["captain"])  # (the same client every time)

        async def post(key: str | None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {captain}"} | ({} if key is None else {"Idempotency-Key": key})
            return await http.post("/v1/tasks", json=_TASK, headers=headers)

        yield post


async def test_accept_refuses_an_empty_reason(tmp_path: Path) -> None:
    """Was a hole (low), fixed: `swarm brain key-store accept --reason ""` (or blanks) accepted the new store and
    logged no reason, where `swarm answer`, `privacy erase` and the rollout commands refuse an empty one. Fix: the
    command refuses it, naming `--reason`, and changes nothing."""
    db = tmp_path / "brain.db"
    home = tmp_path / "home"
    code, _, err = await swarm_on(None, "brain", "token", "create", "--role", "body", "--db", str(db), home=home)
    assert code == 0, err
    for reason in ("", "   "):
        code, out, err = await swarm_on(
            None, "brain", "key-store", "accept", "--db", str(db), "--reason", reason, home=home
        )
        assert code != 0 and "--reason" in err, (code, out, err)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM task_key_secret").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM brain_log WHERE action = 'key_store_accept'").fetchone()[0] == 0


async def test_keyed_requests_racing_an_accept_each_see_one_store(tmp_path: Path) -> None:
    """Held: with the key store lost, keyed requests sent while `key-store accept` runs are each either refused (503,
    nothing written) or taken under the new store, and every retry of one taken returns its task: no request is
    half-taken, and no key makes two tasks."""
    state = tmp_path / "state"
    state.mkdir()
    db = state / "brain.db"
    settings = BrainSettings(database_url=sqlite_url(db), keepalive_s=0.2)
    tokens: dict[str, str] = {}
    async with _brain(settings, tokens) as post:
        assert (await post("k-0")).status_code == 201
    _lose_key_store(state)
    async with _brain(settings, tokens) as post:
        answers: dict[str, int] = {}

        async def send(key: str) -> None:
            answers[key] = (await post(key)).status_code

        async with anyio.create_task_group() as group:
            for n in range(1, 13):
                group.start_soon(send, f"k-{n}")
            code, out, err = await swarm_on(
                None, "brain", "key-store", "accept", "--db", str(db), "--reason", "disk lost", home=tmp_path / "h"
            )
            assert code == 0, (out, err)
        assert set(answers.values()) <= {201, 503}, answers
        for key, status in answers.items():
            again = await post(key)
            assert again.status_code == (200 if status == 201 else 201), (key, status, again.text)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 1 + 12


async def test_keys_kept_before_v26_under_a_store_lost_since_are_not_silently_unmatched(tmp_path: Path) -> None:
    """Was a hole (low), fixed: a brain at schema v25 keeps `Idempotency-Key`s keyed under its key store; the store
    is lost (a restore from a backup, which leaves it out by design) and the brain is upgraded to v26 at that start:
    the new `task_key_secret` table was empty, so the first keyed request pinned the new store's check and a retry
    of a request sent before made a second task (201), silently. Fix: start-up checks the store against what is kept
    (`Brain.check_key_store`): a store made at this start cannot be the keys', so keyed requests are refused (503)
    until `key-store accept` (tests/privacy/test_key_store_upgrade.py: the honest upgrade, another store)."""
    state = tmp_path / "state"
    state.mkdir()
    db = state / "brain.db"
    settings = BrainSettings(database_url=sqlite_url(db), keepalive_s=0.2)
    tokens: dict[str, str] = {}
    async with _brain(settings, tokens) as post:
        first = await post("refund-42")
        assert first.status_code == 201, first.text
    with sqlite3.connect(db) as conn:  # back to v25, as a brain of before kept it
        conn.executescript("DROP TABLE task_key_secret; PRAGMA user_version = 25;")
    _lose_key_store(state)
    async with _brain(settings, tokens) as post:
        retried = await post("refund-42")
        assert (retried.status_code, retried.json()["code"]) == (503, "key_store_replaced"), retried.text
