"""`CompensationStore` on every engine: a body's task updates are recorded with the rows before and after, and
reversed all together, newest first, unless someone else changed a task since."""

from __future__ import annotations

from datetime import timedelta

import pytest

from brain_server import InvalidRequest
from brain_server.state import CompensationDraft, StateEngine

from .records import LATER, NOW, entry, grant, row_of, task

pytestmark = pytest.mark.anyio


async def claim_and_finish(engine: StateEngine) -> None:
    """task_1 claimed by body-a under act_claim, then finished under act_done, both under dec_1."""
    await engine.insert_task(task(1), entry("task_create"))
    claim = CompensationDraft(action_id="act_claim", decision_id="dec_1", body_id="body-a")
    await engine.claim_task(grant(), lambda t: entry("task_claim"), compensation=claim)
    await engine.finish_task(
        "task_1",
        claim_token="clm_1",
        outcome="succeeded",
        summary="done",
        at=NOW,
        log=entry("task_outcome"),
        compensation=CompensationDraft(action_id="act_done", decision_id="dec_1"),
    )


async def test_a_claim_and_an_outcome_keep_the_row_before_and_after_under_their_action_and_decision(
    engine: StateEngine,
) -> None:
    await claim_and_finish(engine)
    (claim,) = await engine.compensations("act_claim")
    assert (claim.kind, claim.target, claim.body_id, claim.decision_id) == ("task_claim", "task_1", "body-a", "dec_1")
    assert (claim.before["state"], claim.after["state"], claim.after["claim_token"]) == ("queued", "claimed", "clm_1")
    (outcome,) = await engine.compensations("act_done")
    assert (outcome.kind, outcome.body_id, outcome.after["state"]) == ("task_outcome", "body-a", "succeeded")
    assert outcome.before == claim.after and outcome.reversed_at is None
    assert [c.action_id for c in await engine.compensations("dec_1")] == ["act_claim", "act_done"], "oldest first"
    assert await engine.compensations("act_unknown") == []


async def test_the_records_of_several_decisions_are_read_at_once_oldest_first_and_no_others(
    engine: StateEngine,
) -> None:
    await claim_and_finish(engine)
    found = await engine.decision_compensations(["dec_1", "dec_none"])
    assert [c.action_id for c in found] == ["act_claim", "act_done"]
    assert found == await engine.compensations("dec_1")
    assert await engine.decision_compensations(["dec_none"]) == []
    assert await engine.decision_compensations([]) == []


async def test_reversing_a_decision_puts_its_rows_back_newest_first_and_marks_and_logs_each(
    engine: StateEngine,
) -> None:
    await claim_and_finish(engine)
    done = await engine.reverse("dec_1", force=False, at=LATER, log=lambda c: entry("reverse", reason=c.action_id))
    assert done.conflicts == [] and [c.action_id for c in done.reversed] == ["act_done", "act_claim"]
    assert all(c.reversed_at == LATER and c.reversed_by == "test" for c in done.reversed)
    back = await engine.task("task_1")
    assert row_of(back) == task(1), "queued again, as before the claim"
    assert back is not None and [e.kind for e in back.history][-2:] == ["reversed", "reversed"], "history only grows"
    assert [c.reversed_at for c in await engine.compensations("dec_1")] == [LATER, LATER]
    assert [e.reason for e in await engine.log_entries() if e.action == "reverse"] == ["act_done", "act_claim"]
    again = await engine.reverse("dec_1", force=False, at=LATER, log=lambda c: entry("reverse"))
    assert (again.reversed, again.conflicts) == ([], []), "reversed once"


async def test_a_reversed_outcome_gives_the_claim_back_under_its_old_token(engine: StateEngine) -> None:
    await claim_and_finish(engine)
    await engine.reverse("act_done", force=False, at=LATER, log=lambda c: entry("reverse"))
    back = await engine.task("task_1")
    assert back is not None and back.state == "claimed"
    renewed = await engine.renew_lease("task_1", claim_token="clm_1", lease_expires=LATER)
    assert renewed.lease_expires == LATER


async def test_a_task_changed_by_someone_else_is_a_conflict_and_nothing_changes_without_force(
    engine: StateEngine,
) -> None:
    await engine.insert_task(task(1), entry("task_create"))
    claim = CompensationDraft(action_id="act_claim", body_id="body-a")
    await engine.claim_task(grant(), lambda t: entry("task_claim"), compensation=claim)
    await engine.requeue_expired(NOW + timedelta(hours=1), lambda t: entry("task_requeue"))
    await engine.claim_task(grant("clm_other", body_id="body-b"), lambda t: entry("task_claim"))
    now = await engine.task("task_1")
    log_before = await engine.log_entries()

    refused = await engine.reverse("act_claim", force=False, at=LATER, log=lambda c: entry("reverse"))
    assert refused.reversed == [] and len(refused.conflicts) == 1
    assert await engine.task("task_1") == now and await engine.log_entries() == log_before
    assert (await engine.compensations("act_claim"))[0].reversed_at is None

    forced = await engine.reverse("act_claim", force=True, at=LATER, log=lambda c: entry("reverse"))
    assert len(forced.reversed) == 1 and forced.conflicts == refused.conflicts
    assert row_of(await engine.task("task_1")) == task(1)


async def test_a_dry_run_returns_what_would_be_reversed_and_changes_nothing(engine: StateEngine) -> None:
    await claim_and_finish(engine)
    before = (await engine.task("task_1"), await engine.compensations("dec_1"), await engine.log_entries())
    dry = await engine.reverse("dec_1", force=False, at=LATER, log=lambda c: entry("reverse"), dry_run=True)
    assert [c.action_id for c in dry.reversed] == ["act_done", "act_claim"]
    assert all(c.reversed_at is None for c in dry.reversed)
    assert (await engine.task("task_1"), await engine.compensations("dec_1"), await engine.log_entries()) == before


async def test_a_reversal_kept_under_its_own_id_is_redone_by_reversing_that_id(engine: StateEngine) -> None:
    await claim_and_finish(engine)
    finished = await engine.task("task_1")
    await engine.reverse("dec_1", force=False, at=LATER, log=lambda c: entry("reverse"), as_action="act_undo")
    kept = await engine.compensations("act_undo")
    assert [c.kind for c in kept] == ["reversal", "reversal"] and kept[0].body_id == "body-a"
    redo = await engine.reverse("act_undo", force=False, at=LATER, log=lambda c: entry("reverse"))
    assert redo.conflicts == [] and row_of(await engine.task("task_1")) == row_of(finished)


async def test_a_reversal_is_never_kept_under_an_id_that_names_updates_already(engine: StateEngine) -> None:
    await claim_and_finish(engine)
    before = await engine.compensations("dec_1")
    for dry_run in (True, False):
        with pytest.raises(InvalidRequest):
            await engine.reverse(
                "act_done",
                force=False,
                at=LATER,
                log=lambda c: entry("reverse"),
                dry_run=dry_run,
                as_action="act_claim",
            )
    assert await engine.compensations("dec_1") == before
