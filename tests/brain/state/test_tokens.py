"""`TokenStore`: tokens are found by hash, bound to their first body and revoked, once each, on every engine."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from brain_server import NotFound
from brain_server.exceptions import RebindRefused
from brain_server.state import StateEngine

from .records import LATER, NOW, entry, token_record

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


async def test_a_body_id_another_token_holds_is_not_bound_by_first_use(engine: StateEngine) -> None:
    for n in (1, 2):
        await engine.add_token(token_record(n), entry("token_create"))
    await engine.bind_token("tok_1", "body-a", entry("token_bind"))
    second = await engine.bind_token("tok_2", "body-a", entry("token_bind"))
    assert second is not None and second.body_id is None, "only a rebind moves a body"
    assert [e.action for e in await engine.log_entries()].count("token_bind") == 1


async def test_a_body_id_stays_taken_after_its_token_is_revoked(engine: StateEngine) -> None:
    for n in (1, 2):
        await engine.add_token(token_record(n), entry("token_create"))
    await engine.bind_token("tok_1", "body-a", entry("token_bind"))
    await engine.revoke_token("tok_1", at=NOW, log=entry("token_revoke"))
    second = await engine.bind_token("tok_2", "body-a", entry("token_bind"))
    assert second is not None and second.body_id is None


async def test_a_rebind_moves_a_body_to_another_token_and_revokes_the_one_that_held_it(engine: StateEngine) -> None:
    for n in (1, 2):
        await engine.add_token(token_record(n), entry("token_create"))
    await engine.bind_token("tok_1", "body-a", entry("token_bind"))
    moved = await engine.rebind_body(
        "body-a", "tok_2", at=LATER, log=entry("body_rebind"), revoke_log=entry("token_revoke")
    )
    assert (moved.token.id, moved.token.body_id) == ("tok_2", "body-a")
    assert moved.previous is not None and (moved.previous.id, moved.previous.revoked_at) == ("tok_1", None)
    old, new = await engine.token_by_hash("hash_1"), await engine.token_by_hash("hash_2")
    assert old is not None and (old.body_id, old.revoked_at) == ("body-a", LATER)
    assert new == moved.token
    assert [e.action for e in await engine.log_entries()][-2:] == ["token_revoke", "body_rebind"]


async def test_a_rebind_of_a_body_whose_token_was_revoked_revokes_nothing_more(engine: StateEngine) -> None:
    for n in (1, 2):
        await engine.add_token(token_record(n), entry("token_create"))
    await engine.bind_token("tok_1", "body-a", entry("token_bind"))
    await engine.revoke_token("tok_1", at=NOW, log=entry("token_revoke"))
    moved = await engine.rebind_body(
        "body-a", "tok_2", at=LATER, log=entry("body_rebind"), revoke_log=entry("token_revoke")
    )
    assert moved.previous is None and moved.token.body_id == "body-a"
    old = await engine.token_by_hash("hash_1")
    assert old is not None and old.revoked_at == NOW, "the first revocation stands"
    again = await engine.rebind_body(
        "body-a", "tok_2", at=LATER, log=entry("body_rebind"), revoke_log=entry("token_revoke")
    )
    assert again.previous is None and again.token == moved.token, "rebinding the holder changes nothing but the log"


@pytest.mark.parametrize(
    ("target", "error"),
    [("tok_unknown", NotFound), ("tok_3", RebindRefused), ("tok_4", RebindRefused), ("tok_5", RebindRefused)],
    ids=["unknown", "approver", "revoked", "bound_elsewhere"],
)
async def test_a_rebind_to_a_token_that_cannot_take_the_body_changes_nothing(
    engine: StateEngine, target: str, error: type[Exception]
) -> None:
    for n, role in ((1, "body"), (3, "approver"), (4, "body"), (5, "body")):
        await engine.add_token(token_record(n, role), entry("token_create"))
    await engine.bind_token("tok_1", "body-a", entry("token_bind"))
    await engine.revoke_token("tok_4", at=NOW, log=entry("token_revoke"))
    await engine.bind_token("tok_5", "body-b", entry("token_bind"))
    before = (await engine.tokens(), await engine.log_entries())
    with pytest.raises(error):
        await engine.rebind_body("body-a", target, at=LATER, log=entry("body_rebind"), revoke_log=entry("token_revoke"))
    assert (await engine.tokens(), await engine.log_entries()) == before


async def test_the_revocation_a_rebind_makes_is_logged_against_the_token_it_revoked(engine: StateEngine) -> None:
    for n in (1, 2):
        await engine.add_token(token_record(n), entry("token_create"))
    await engine.bind_token("tok_1", "body-a", entry("token_bind"))
    await engine.rebind_body("body-a", "tok_2", at=LATER, log=entry("body_rebind"), revoke_log=entry("token_revoke"))
    revoke, rebind = (await engine.log_entries())[-2:]
    assert (revoke.action, revoke.target) == ("token_revoke", "tok_1")
    assert rebind == entry("body_rebind")


async def test_a_rebind_keeps_a_bodys_agent(engine: StateEngine) -> None:
    """A body moves only to a token of the agent its tokens so far were of (live or revoked): an agent's body never
    becomes another agent's, nor an IDE body's; a new token of the same agent takes it."""
    await engine.add_token(replace(token_record(1), agent="w1"), entry("token_create"))
    await engine.add_token(replace(token_record(2), agent="w2"), entry("token_create"))
    await engine.add_token(token_record(3), entry("token_create"))
    await engine.add_token(replace(token_record(4), agent="w1"), entry("token_create"))
    await engine.bind_token("tok_1", "body-a", entry("token_bind"))
    await engine.revoke_token("tok_1", at=NOW, log=entry("token_revoke"))
    for other, owner in (("tok_2", "agent 'w2'"), ("tok_3", "no agent \\(an IDE body\\)")):
        with pytest.raises(RebindRefused, match=f"belongs to agent 'w1', token {other} to {owner}: a body keeps its"):
            await engine.rebind_body(
                "body-a", other, at=LATER, log=entry("body_rebind"), revoke_log=entry("token_revoke")
            )
    moved = await engine.rebind_body(
        "body-a", "tok_4", at=LATER, log=entry("body_rebind"), revoke_log=entry("token_revoke")
    )
    assert (moved.token.id, moved.token.agent, moved.token.body_id) == ("tok_4", "w1", "body-a")
