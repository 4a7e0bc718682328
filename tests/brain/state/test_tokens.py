"""`TokenStore`: tokens are found by hash, bound to their first body and revoked, once each, on every engine."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from brain_server.state import StateEngine

from .records import NOW, entry, token_record

pytestmark = pytest.mark.anyio


async def test_a_token_is_found_by_its_hash_and_its_creation_is_logged(engine: StateEngine) -> None:
    record = token_record(1, "captain")
    await engine.add_token(record, entry("token_create"))
    assert await engine.token_by_hash("hash_1") == record
    assert await engine.token_by_hash("hash_unknown") is None
    assert [e.action for e in await engine.log_entries()] == ["token_create"]


async def test_a_body_token_binds_once_and_keeps_its_first_body(engine: StateEngine) -> None:
    await engine.add_token(token_record(1), entry("token_create"))
    bound = await engine.bind_token("tok_1", "body-a", entry("token_bind"))
    assert bound is not None and bound.body_id == "body-a"
    again = await engine.bind_token("tok_1", "body-b", entry("token_bind"))
    assert again is not None and again.body_id == "body-a", "the first body wins, for good"
    assert await engine.token_by_hash("hash_1") == bound
    assert [e.action for e in await engine.log_entries()] == ["token_create", "token_bind"], "a lost bind logs nothing"
    assert await engine.bind_token("tok_unknown", "body-a", entry("token_bind")) is None


async def test_approver_captain_and_revoked_tokens_are_never_bound(engine: StateEngine) -> None:
    await engine.add_token(token_record(1, "approver"), entry("token_create"))
    await engine.add_token(token_record(2, "captain"), entry("token_create"))
    await engine.add_token(token_record(3), entry("token_create"))
    await engine.revoke_token("tok_3", at=NOW, log=entry("token_revoke"))
    for token_id in ("tok_1", "tok_2", "tok_3"):
        record = await engine.bind_token(token_id, "body-a", entry("token_bind"))
        assert record is not None and record.body_id is None
    assert "token_bind" not in [e.action for e in await engine.log_entries()]


async def test_revoking_returns_the_token_as_it_was_and_a_second_revocation_changes_nothing(
    engine: StateEngine,
) -> None:
    await engine.add_token(token_record(1), entry("token_create"))
    await engine.bind_token("tok_1", "body-a", entry("token_bind"))
    before = await engine.revoke_token("tok_1", at=NOW, log=entry("token_revoke"))
    assert before is not None and before.revoked_at is None and before.body_id == "body-a"
    stored = await engine.token_by_hash("hash_1")
    assert stored is not None and stored.revoked_at == NOW and stored.body_id == "body-a"
    later = NOW + timedelta(hours=1)
    again = await engine.revoke_token("tok_1", at=later, log=entry("token_revoke"))
    assert again == stored, "already revoked: the first revocation stands"
    assert await engine.token_by_hash("hash_1") == stored
    assert [e.action for e in await engine.log_entries()].count("token_revoke") == 1
    assert await engine.revoke_token("tok_unknown", at=NOW, log=entry("token_revoke")) is None
    assert [e.action for e in await engine.log_entries()].count("token_revoke") == 1


async def test_tokens_are_listed_oldest_first_with_their_binding_and_revocation(engine: StateEngine) -> None:
    for n, role in ((1, "captain"), (2, "body"), (3, "approver")):
        record = replace(token_record(n, role), created_at=NOW + timedelta(seconds=10 - n))
        await engine.add_token(record, entry("token_create"))
    await engine.add_token(replace(token_record(4), created_at=NOW + timedelta(seconds=7)), entry("token_create"))
    await engine.bind_token("tok_2", "body-a", entry("token_bind"))
    await engine.revoke_token("tok_1", at=NOW, log=entry("token_revoke"))
    listed = await engine.tokens()
    assert [t.id for t in listed] == ["tok_3", "tok_4", "tok_2", "tok_1"], "by creation time, then insertion"
    assert [(t.body_id, t.revoked_at) for t in listed] == [(None, None), (None, None), ("body-a", None), (None, NOW)]
