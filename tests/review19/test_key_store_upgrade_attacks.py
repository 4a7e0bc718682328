# pyright: strict
"""Review 19: the brain's start-up check of its key store (`Brain.check_key_store`) when its `Idempotency-Key`s
were kept before brain schema v26, attacked with a live brain on 127.0.0.1, its SQLite file and key store."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from brain_server import BrainSettings
from brain_server.state import KEY_STORE_UNVERIFIED, sqlite_url
from shared_protocol.privacy import KEY_STORE_FILE, SqliteSubjectKeys
from tests.brain.helpers import live_brain

pytestmark = pytest.mark.anyio

Post = Callable[[str | None], Awaitable[httpx.Response]]


@asynccontextmanager
async def _brain(settings: BrainSettings, tokens: dict[str, str], task: dict[str, Any]) -> AsyncGenerator[Post]:
    async with live_brain(settings) as live, httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        captain = tokens.setdefault("captain", live.tokens["captain"])

        async def post(key: str | None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {captain}"} | ({} if key is None else {"Idempotency-Key": key})
            return await http.post("/v1/tasks", json=task, headers=headers)

        yield post


def _to_v25(db: Path) -> None:
    with closing(sqlite3.connect(db)) as conn:
        conn.executescript("DROP TABLE task_key_secret; PRAGMA user_version = 25;")


def _kept_check(db: Path) -> str | None:
    with closing(sqlite3.connect(db)) as conn:
        row = conn.execute("SELECT check_value FROM task_key_secret").fetchone()
    return None if row is None else str(row[0])


def _setting(tmp_path: Path) -> tuple[Path, BrainSettings]:
    state = tmp_path / "state"
    state.mkdir()
    db = state / "brain.db"
    return db, BrainSettings(database_url=sqlite_url(db), keepalive_s=0.2)


@pytest.mark.xfail(
    strict=True,
    reason="LOW: a keyed task whose only token-shaped text is one this store never made (a token quoted in a title: "
    "protect keeps it, its payload being no personal data; or a body's token) makes an honest upgrade with its own "
    "store look replaced: keyed requests get 503 key_store_replaced until a human runs key-store accept",
)
async def test_an_honest_upgrade_whose_keyed_task_quotes_a_foreign_token_is_not_refused(tmp_path: Path) -> None:
    db, settings = _setting(tmp_path)
    task = {"title": "parse tokens like [pii:email:s0123456789abcdef:QUFBQUFBQUE] in the log", "value_usd": 5}
    tokens: dict[str, str] = {}
    async with _brain(settings, tokens, task) as post:
        first = await post("refund-42")
        assert first.status_code == 201, first.text
    with closing(sqlite3.connect(db)) as conn:  # (the token kept as written: no personal data in it)
        assert conn.execute("SELECT count(*) FROM tasks WHERE title LIKE '%s0123456789abcdef%'").fetchone()[0] == 1
    _to_v25(db)
    async with _brain(settings, tokens, task) as post:  # (the same key store: an honest upgrade)
        retried = await post("refund-42")
        assert (retried.status_code, retried.json().get("id")) == (200, first.json()["id"]), retried.text


@pytest.mark.xfail(
    strict=True,
    reason="LOW: a key store lost before the upgrade and made anew by an earlier open that did not reach the check (a "
    "start that failed after opening it, a tool that opened it) is not 'made at this start': with keyed tasks "
    "holding no personal data it is pinned silently, and a retry of a request sent before makes a second task",
)
async def test_a_store_lost_and_made_by_an_earlier_open_is_not_pinned_silently(tmp_path: Path) -> None:
    db, settings = _setting(tmp_path)
    task = {"title": "write the refund note", "value_usd": 5}
    tokens: dict[str, str] = {}
    async with _brain(settings, tokens, task) as post:
        assert (await post("refund-42")).status_code == 201
    _to_v25(db)
    for leftover in db.parent.glob(f"{KEY_STORE_FILE}*"):
        leftover.unlink()
    SqliteSubjectKeys(db.parent / KEY_STORE_FILE).close()  # (an open before this start made the new store)
    async with _brain(settings, tokens, task) as post:
        retried = await post("refund-42")
        assert (retried.status_code, retried.json().get("code")) == (503, "key_store_replaced"), retried.text
    assert _kept_check(db) == KEY_STORE_UNVERIFIED
