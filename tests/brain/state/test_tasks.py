"""`TaskStore` on every engine: the most valuable task is claimed once, and only its current claim finishes it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from brain_server import BodyMismatch, NotFound, StaleClaim
from brain_server.exceptions import KeyReused, KeyStoreReplaced
from brain_server.state import KEY_STORE_UNVERIFIED, StateEngine, TaskKey
from shared_protocol.brain import Claimant, Task

from .records import NOW, entry, grant, task

pytestmark = pytest.mark.anyio


async def claimed(engine: StateEngine, claim_token: str = "clm_1", *, body_id: str = "body-a") -> Task:
    won = await engine.claim_task(grant(claim_token, body_id=body_id), lambda t: entry("task_claim"))
    assert won is not None
    return won


async def test_a_task_is_queued_with_its_log_line(engine: StateEngine) -> None:
    assert await engine.insert_task(task(1), entry("task_create")) == task(1)
    assert await engine.task("task_1") == task(1)
    assert await engine.task("task_unknown") is None
    assert [e.action for e in await engine.log_entries()] == ["task_create"]


async def test_a_key_returns_the_task_it_first_created_and_refuses_another_request(engine: StateEngine) -> None:
    key = TaskKey(token_id="tok_1", key="k1", request_sha256="sha-a")
    first = await engine.insert_task(task(1), entry("task_create"), key=key)
    assert await engine.insert_task(task(2), entry("task_create"), key=key) == first
    with pytest.raises(KeyReused):
        await engine.insert_task(
            task(3), entry("task_create"), key=TaskKey(token_id="tok_1", key="k1", request_sha256="b")
        )
    other_token = TaskKey(token_id="tok_2", key="k1", request_sha256="sha-a")
    assert await engine.insert_task(task(4), entry("task_create"), key=other_token) == task(4), "keys are per token"
    assert [await engine.task(f"task_{n}") is not None for n in (1, 2, 3, 4)] == [True, False, False, True]
    assert [e.action for e in await engine.log_entries()].count("task_create") == 2


async def test_a_key_under_another_key_stores_secret_is_refused_until_that_store_is_accepted(
    engine: StateEngine,
) -> None:
    old = TaskKey(token_id="tok_1", key="k1", request_sha256="sha-a", secret_check="check-a")
    first = await engine.insert_task(task(1), entry("task_create"), key=old)
    new = TaskKey(token_id="tok_1", key="k1-new-hmac", request_sha256="sha-a2", secret_check="check-b")
    with pytest.raises(KeyStoreReplaced):
        await engine.insert_task(task(2), entry("task_create"), key=new)
    assert await engine.task("task_2") is None
    assert await engine.insert_task(task(3), entry("task_create")) == task(3), "no key: taken"
    assert await engine.accept_key_store("check-b", entry("key_store_accept")) == (True, 1)
    assert await engine.accept_key_store("check-b", entry("key_store_accept")) == (False, 1)
    assert await engine.insert_task(task(2), entry("task_create"), key=new) == task(2)
    assert await engine.insert_task(task(4), entry("task_create"), key=new) == task(2)
    with pytest.raises(KeyStoreReplaced):
        await engine.insert_task(task(5), entry("task_create"), key=old)
    assert await engine.task("task_1") == first
    assert [e.action for e in await engine.log_entries()].count("key_store_accept") == 1


async def test_a_key_store_check_is_pinned_only_when_none_is_kept(engine: StateEngine) -> None:
    """The start-up check (`Brain.check_key_store`) pins a check value only where none is kept: the first pin stays,
    a keyed request under another is refused, and with no key kept or a check kept there is nothing to check."""
    assert await engine.unpinned_keys() is None
    assert await engine.pin_key_store(KEY_STORE_UNVERIFIED) is True
    assert await engine.pin_key_store("check-a") is False
    key = TaskKey(token_id="t", key="k", request_sha256="s", secret_check="check-a")
    with pytest.raises(KeyStoreReplaced):
        await engine.insert_task(task(1), entry("task_create"), key=key)
    assert await engine.accept_key_store("check-a", entry("key_store_accept")) == (True, 0)
    assert await engine.insert_task(task(1), entry("task_create"), key=key) == task(1)
    assert await engine.unpinned_keys() is None


async def test_the_most_valuable_queued_task_is_claimed_first_oldest_among_equals(engine: StateEngine) -> None:
    for n, value in ((1, 5), (2, 10), (3, 10), (4, 1)):
        await engine.insert_task(task(n, value_usd=value), entry("task_create"))
    order = [(await claimed(engine, f"clm_{n}")).id for n in range(4)]
    assert order == ["task_2", "task_3", "task_1", "task_4"]
    assert await engine.claim_task(grant("clm_x"), lambda t: entry("task_claim")) is None, "none left"


async def test_a_claim_records_its_holder_lease_and_attempt_and_logs_the_task_it_won(engine: StateEngine) -> None:
    await engine.insert_task(task(1), entry("task_create"))
    won = await engine.claim_task(grant(), lambda t: entry("task_claim", reason=t.id))
    assert won is not None and won == await engine.task("task_1")
    assert (won.state, won.claimed_by, won.claimed_at) == ("claimed", Claimant(body_id="body-a", agent="a"), NOW)
    assert (won.lease_expires, won.attempts) == (NOW + timedelta(minutes=5), 1)
    assert (await engine.log_entries())[-1].reason == "task_1"


async def test_a_claimed_task_finishes_with_its_current_claim_token_only(engine: StateEngine) -> None:
    await engine.insert_task(task(1), entry("task_create"))
    await claimed(engine)
    later = NOW + timedelta(minutes=1)

    async def finish(claim_token: str, task_id: str = "task_1") -> Task:
        return await engine.finish_task(
            task_id, claim_token=claim_token, outcome="failed", summary="broke", at=later, log=entry("task_outcome")
        )

    with pytest.raises(StaleClaim):
        await finish("clm_wrong")
    with pytest.raises(NotFound):
        await finish("clm_1", "task_unknown")
    done = await finish("clm_1")
    assert (done.state, done.outcome_summary, done.finished_at, done.lease_expires) == ("failed", "broke", later, None)
    assert await engine.task("task_1") == done
    with pytest.raises(StaleClaim):
        await finish("clm_1")
    assert [e.action for e in await engine.log_entries()].count("task_outcome") == 1


async def test_an_outcome_for_a_task_of_another_body_is_refused_and_changes_nothing(engine: StateEngine) -> None:
    await engine.insert_task(task(1), entry("task_create"))
    won = await claimed(engine)
    log_before = await engine.log_entries()

    async def finish(holder: str | None) -> Task:
        return await engine.finish_task(
            "task_1",
            claim_token="clm_1",
            outcome="succeeded",
            summary="",
            at=NOW,
            log=entry("task_outcome"),
            holder=holder,
        )

    with pytest.raises(BodyMismatch, match="body-b"):
        await finish("body-b")
    assert await engine.task("task_1") == won and await engine.log_entries() == log_before
    assert (await finish("body-a")).state == "succeeded"


async def test_a_lease_is_renewed_only_under_the_current_claim_and_without_a_log_line(engine: StateEngine) -> None:
    await engine.insert_task(task(1), entry("task_create"))
    await claimed(engine)
    log_before = await engine.log_entries()
    later = NOW + timedelta(minutes=9)
    renewed = await engine.renew_lease("task_1", claim_token="clm_1", lease_expires=later, holder="body-a")
    assert renewed.lease_expires == later and await engine.task("task_1") == renewed
    assert await engine.log_entries() == log_before
    with pytest.raises(StaleClaim):
        await engine.renew_lease("task_1", claim_token="clm_wrong", lease_expires=later)
    with pytest.raises(BodyMismatch):
        await engine.renew_lease("task_1", claim_token="clm_1", lease_expires=later, holder="body-b")
    with pytest.raises(NotFound):
        await engine.renew_lease("task_unknown", claim_token="clm_1", lease_expires=later)


async def test_a_task_whose_lease_ran_out_is_requeued_and_its_claim_goes_stale(engine: StateEngine) -> None:
    await engine.insert_task(task(1), entry("task_create"))
    await engine.insert_task(task(2), entry("task_create"))
    await claimed(engine, "clm_1")
    await engine.claim_task(grant("clm_2", lease=timedelta(hours=1)), lambda t: entry("task_claim"))
    expiry = NOW + timedelta(minutes=5)
    requeued = await engine.requeue_expired(expiry, lambda t: entry("task_requeue", reason=t.id))
    assert [(t.id, t.state, t.claimed_by, t.lease_expires, t.attempts) for t in requeued] == [
        ("task_1", "queued", None, None, 1)
    ]
    assert await engine.task("task_1") == requeued[0]
    assert (await engine.log_entries())[-1].reason == "task_1"
    with pytest.raises(StaleClaim):
        await engine.renew_lease("task_1", claim_token="clm_1", lease_expires=expiry)
    assert await engine.requeue_expired(expiry, lambda t: entry("task_requeue")) == []
    again = await claimed(engine, "clm_3")
    assert (again.id, again.attempts) == ("task_1", 2)


async def test_tasks_are_counted_by_state(engine: StateEngine) -> None:
    assert await engine.count_tasks() == {}
    for n in range(3):
        await engine.insert_task(task(n), entry("task_create"))
    await claimed(engine, "clm_1")
    won = await claimed(engine, "clm_2")
    await engine.finish_task(
        won.id, claim_token="clm_2", outcome="succeeded", summary="", at=NOW, log=entry("task_outcome")
    )
    assert await engine.count_tasks() == {"queued": 1, "claimed": 1, "succeeded": 1}
