"""An `Idempotency-Key` is kept as an HMAC of (token, key) under the brain's key store secret (#21): the same key
from the same token still finds its task, another request under it is still refused (409, without quoting it), and
a key kept in clear by a brain before this (a row as it wrote them) is still honoured, then keyed by `swarm privacy
migrate` (`POST /v1/privacy/migrate`). A live brain on a real SQLite file."""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

import httpx
import pytest

from tests.brain.helpers import LiveBrain

from .plant import leaks, plant

pytestmark = pytest.mark.anyio


def kept_keys(live: LiveBrain) -> list[tuple[str, str]]:
    with sqlite3.connect(live.db) as conn:
        return [(str(t), str(k)) for t, k in conn.execute("SELECT token_id, key FROM task_keys").fetchall()]


async def test_a_key_kept_in_clear_before_is_honoured_then_keyed_by_migrate(live: LiveBrain) -> None:
    p = plant()
    sent = f"ticket-{p.email}-42"
    task: dict[str, Any] = {"title": "write the refund note", "value_usd": 5}
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        captain = {"Authorization": f"Bearer {live.tokens['captain']}"}

        async def create(key: str, body: dict[str, Any]) -> httpx.Response:
            return await http.post("/v1/tasks", json=body, headers={**captain, "Idempotency-Key": key})

        first = await create(sent, task)
        assert first.status_code == 201, first.text
        ((token_id, kept),) = kept_keys(live)
        assert kept.startswith("hmac ") and p.email not in kept
        assert kept.removeprefix("hmac ") != hashlib.sha256(f"{token_id}\0{sent}".encode()).hexdigest()
        reused = await create(sent, {**task, "title": "another"})
        assert reused.status_code == 409 and sent not in reused.text and p.email not in reused.text, reused.text

        # A row as a brain before this kept it: the key as sent.
        with sqlite3.connect(live.db) as conn:
            conn.execute("UPDATE task_keys SET key = ?", (sent,))
        again = await create(sent, task)
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"], again.text
        assert (await create(sent, {**task, "title": "another"})).status_code == 409
        assert kept_keys(live) == [(token_id, sent)]  # (looked up, not rewritten: that is migrate's)

        migrated = await http.post("/v1/privacy/migrate", headers=captain)
        assert migrated.status_code == 200, migrated.text
        assert migrated.json()["records"].get("task_keys") == 1
        assert kept_keys(live) == [(token_id, kept)]  # (the same HMAC a new request gets)
        again = await create(sent, task)
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"], again.text
        other = await create(f"ticket-{p.email}-43", task)
        assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
        second = await http.post("/v1/privacy/migrate", headers=captain)
        assert "task_keys" not in second.json()["records"]  # (nothing left to key)
    assert leaks([live.db.parent], [sent]) == []
