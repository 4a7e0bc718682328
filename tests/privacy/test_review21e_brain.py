"""Adversarial review of #21 (the brain's HTTP entry points): what a captain sends beside a task's fields, searched
for in every file under the brain's state directory."""

from __future__ import annotations

import httpx
import pytest

from tests.brain.helpers import LiveBrain

from .plant import leaks, plant

pytestmark = pytest.mark.anyio


async def test_an_idempotency_key_naming_a_person_is_not_kept_in_clear(live: LiveBrain) -> None:
    """Was a hole (low): `POST /v1/tasks` takes an `Idempotency-Key` header (any visible ASCII, so a client may build it
    from what it knows: `ticket-<email>-42`) and keeps it as sent in `task_keys` (`service.queue_task` ->
    `TaskKey.key`), beside a task whose own fields are protected: the email is in `brain.db`, its WAL and every
    backup, and `swarm privacy erase` cannot reach it (a replay's `KeyReused` message quotes it too). Reproduce: as
    below. Fixed: an HMAC of (token id, key) under the brain's key store secret
    is kept and looked up (`privacy.keyed_task_key`; not a bare SHA-256: such keys are guessable); the `KeyReused`
    message does not quote the key; rows kept before, in clear, are keyed by `swarm privacy migrate`
    (`test_idempotency_keyed.py`)."""
    p = plant()
    captain = {"Authorization": f"Bearer {live.tokens['captain']}", "Idempotency-Key": f"ticket-{p.email}-42"}
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        sent = await http.post("/v1/tasks", json={"title": f"write to {p.email}", "value_usd": 5}, headers=captain)
        assert sent.status_code == 201, sent.text
        again = await http.post("/v1/tasks", json={"title": f"write to {p.email}", "value_usd": 5}, headers=captain)
        assert again.status_code < 300 and again.json()["id"] == sent.json()["id"], again.text
    assert leaks([live.db.parent], p.values()) == []
