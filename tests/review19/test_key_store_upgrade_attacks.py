# pyright: strict
"""Review 19: the brain's start-up check of its key store (`Brain.check_key_store`) when its `Idempotency-Key`s
were kept before brain schema v26, attacked with a live brain on 127.0.0.1, its SQLite file and key store."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from brain_server import BrainSettings
from brain_server.state import KEY_STORE_UNVERIFIED, sqlite_url
from shared_protocol.privacy import KEY_STORE_FILE, PrivacyConfig, Protector, SqliteSubjectKeys
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


def _body_token(tmp_path: Path) -> str:
    """A token as a body's store makes it (a real encryption, under a key the brain's store never holds)."""
    keys = SqliteSubjectKeys(tmp_path / "body-keys.db")
    try:
        return Protector(PrivacyConfig(), keys).protect("bob@example.com")
    finally:
        keys.close()


@pytest.mark.parametrize("quoted", ["forged", "body"])
async def test_an_honest_upgrade_whose_keyed_task_quotes_a_foreign_token_is_not_refused(
    tmp_path: Path, quoted: str
) -> None:
    """Was LOW, fixed: a keyed task whose only token-shaped text is one this store never made (a token quoted in a
    title, kept as written, its payload being no personal data; or a body's token) made an honest upgrade with its
    own store look replaced: keyed requests got 503 until a human ran key-store accept. Now a kept request digest,
    keyed under the secret of the store it was kept under, is read back from its task and keyed again with this
    store's (`brain_server.privacy.key_store_mismatch`): the same digest, the same store."""
    db, settings = _setting(tmp_path)
    token = "[pii:email:s0123456789abcdef:QUFBQUFBQUE]" if quoted == "forged" else _body_token(tmp_path)
    task = {"title": f"parse tokens like {token} in the log", "value_usd": 5}
    tokens: dict[str, str] = {}
    async with _brain(settings, tokens, task) as post:
        first = await post("refund-42")
        assert first.status_code == 201, first.text
    with closing(sqlite3.connect(db)) as conn:  # (the token kept as written: no personal data in it)
        assert conn.execute("SELECT count(*) FROM tasks WHERE title = ?", (task["title"],)).fetchone()[0] == 1
    _to_v25(db)
    async with _brain(settings, tokens, task) as post:  # (the same key store: an honest upgrade)
        retried = await post("refund-42")
        assert (retried.status_code, retried.json().get("id")) == (200, first.json()["id"]), retried.text


async def test_a_store_lost_and_made_by_an_earlier_open_is_not_pinned_silently(tmp_path: Path) -> None:
    """Was LOW, fixed: a key store lost before the upgrade and made anew by an earlier open that did not reach the
    check (a start that failed after opening it, a tool that opened it) was not 'made at this start': with keyed
    tasks holding no personal data it was pinned silently, and a retry of a request sent before made a second task.
    Now its secret is asked to key a kept request digest read back from its task, which it does not."""
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


async def test_another_brains_older_store_put_back_is_refused_naming_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store made before the keyed tasks were (another brain's, put back; a wrong `privacy_key_store`), their tasks
    holding no personal data to tell it by: its secret keys none of their request digests read back, so keyed
    requests are refused (503 key_store_replaced, nothing written) and the log says why; one without a key is
    taken."""
    db, settings = _setting(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    SqliteSubjectKeys(other / KEY_STORE_FILE).close()  # (made first: older than every kept key)
    task = {"title": "write the refund note", "value_usd": 5}
    tokens: dict[str, str] = {}
    async with _brain(settings, tokens, task) as post:
        assert (await post("refund-42")).status_code == 201
    _to_v25(db)
    for leftover in db.parent.glob(f"{KEY_STORE_FILE}*"):
        leftover.unlink()
    shutil.copy(other / KEY_STORE_FILE, db.parent / KEY_STORE_FILE)
    with caplog.at_level(logging.WARNING, logger="brain_server"):
        async with _brain(settings, tokens, task) as post:
            retried = await post("refund-42")
            assert (retried.status_code, retried.json().get("code")) == (503, "key_store_replaced"), retried.text
            assert (await post(None)).status_code == 201
    assert _kept_check(db) == KEY_STORE_UNVERIFIED
    assert any("keys none of the 1 kept request digests" in r.getMessage() for r in caplog.records), caplog.text
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 2
