"""Adversarial review of #21 (the brain's HTTP entry points): what a captain sends beside a task's fields, searched
for in every file under the brain's state directory."""

from __future__ import annotations

import httpx
import pytest

from tests.brain.helpers import LiveBrain

from .plant import leaks, plant

pytestmark = pytest.mark.anyio


@pytest.mark.xfail(strict=True, reason="HOLE (low): an Idempotency-Key is kept in clear in the brain's task_keys")
async def test_an_idempotency_key_naming_a_person_is_not_kept_in_clear(live: LiveBrain) -> None:
    """HOLE (low): `POST /v1/tasks` takes an `Idempotency-Key` header (any visible ASCII, so a client may build it
    from what it knows: `ticket-<email>-42`) and keeps it as sent in `task_keys` (`service.queue_task` ->
    `TaskKey.key`), beside a task whose own fields are protected: the email is in `brain.db`, its WAL and every
    backup, and `swarm privacy erase` cannot reach it (a replay's `KeyReused` message quotes it too). Reproduce: as
    below. Fix: keep an HMAC of (token id, key) under a secret of the brain's (not a bare SHA-256: such keys are
    guessable) and look it up by that; the `KeyReused` message need not quote the key (the client sent it); the
    rows kept before, in clear, go with `swarm privacy migrate` or their retention."""
    p = plant()
    captain = {"Authorization": f"Bearer {live.tokens['captain']}", "Idempotency-Key": f"ticket-{p.email}-42"}
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        sent = await http.post("/v1/tasks", json={"title": f"write to {p.email}", "value_usd": 5}, headers=captain)
        assert sent.status_code == 201, sent.text
        again = await http.post("/v1/tasks", json={"title": f"write to {p.email}", "value_usd": 5}, headers=captain)
        assert again.status_code < 300 and again.json()["id"] == sent.json()["id"], again.text
    assert leaks([live.db.parent], p.values()) == []
