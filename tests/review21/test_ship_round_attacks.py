# pyright: strict
"""Review 21: the shipping loop's round (`ship_pending(round_only=True)`, commit a5c49d2) and its wake-up from the
audit writer's thread (`events_committed`, commit 9fa2751), attacked against a real brain on loopback: the brain
holding less, or more, than the body thought mid-round; events written while a round ships, with the poll made an hour
(so only the writer's word can bring them out in time); two links on one workspace's chain; and `leave()`, which
must ship all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from body_mcp import Body
from body_mcp import brain_link as brain_link_module
from body_mcp.brain_link import BrainLink
from brain_server import SqliteStateEngine
from shared_protocol.brain import AuditAck, AuditBatch
from tests.body.test_brain_link import brain_with_captain, linked_body, wait_until, write

pytestmark = pytest.mark.anyio


async def _held_by_brain(db: Path, body_id: str) -> list[int]:
    """The seqs of `body_id`'s events the brain stores."""
    state = await SqliteStateEngine.open(db)
    try:
        return [e.seq for e in await state.audit_events(body_id, limit=10_000)]
    finally:
        await state.close()


def _head(body: Body) -> int:
    return body.audit.tail(1)[0].seq


def _link(body: Body) -> BrainLink:
    assert body.link is not None
    return body.link


async def test_a_round_told_of_a_gap_resumes_where_the_brain_is_and_ships_through_its_bound(
    tmp_path: Path, home: Path
) -> None:
    """The body thinks the brain holds more than it does (its outbox ahead: a brain restored from a backup, say):
    the round's first batch is answered CHAIN_GAP with what the brain holds, the round resumes there and ships every
    event through the head it began with, none skipped, none twice."""
    async with brain_with_captain(tmp_path) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        try:
            link = _link(body)
            await link.register()
            for n in range(5):
                body.record_human(action="note", rationale=f"first {n}")
            first = _head(body)
            assert await link.ship_pending(round_only=True) == first
            for n in range(5):
                body.record_human(action="note", rationale=f"second {n}")
            head = _head(body)
            link._set_shipped(head - 2)  # pyright: ignore[reportPrivateUsage]
            assert await link.ship_pending(round_only=True) == head
            assert link.shipped_through() == head
            assert await _held_by_brain(tmp_path / "brain.db", body.audit.body_id) == list(range(1, head + 1))
        finally:
            body.close()


async def test_a_round_whose_brain_holds_more_than_the_body_thought_ships_the_rest_once(
    tmp_path: Path, home: Path
) -> None:
    """The body forgot what it shipped (its outbox behind: a crash between the brain's ack and the mark): the round
    re-offers events the brain holds, is told where the brain is, and ships only what it lacks."""
    async with brain_with_captain(tmp_path, max_audit_request_bytes=4096) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        try:
            link = _link(body)
            await link.register()
            for n in range(8):
                body.record_human(action="note", rationale=f"event {n} " + "r" * 800)
            shipped = await link.ship_pending(round_only=True)
            assert shipped == _head(body)
            for n in range(4):
                body.record_human(action="note", rationale=f"more {n} " + "r" * 800)
            head = _head(body)
            link._set_shipped(2)  # pyright: ignore[reportPrivateUsage]
            assert await link.ship_pending(round_only=True) == head
            assert await _held_by_brain(tmp_path / "brain.db", body.audit.body_id) == list(range(1, head + 1))
        finally:
            body.close()


async def test_events_written_while_a_round_ships_go_out_in_the_next_round(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer tells of commits made while the loop ships (a flag): the loop's next look finds it and runs the
    next round. Three rounds, each with events written during its first request; nothing lost or doubled."""
    monkeypatch.setattr(brain_link_module, "SHIP_POLL_S", 0.05)
    monkeypatch.setattr(brain_link_module, "SHIP_EVERY_S", 0.05)
    async with brain_with_captain(tmp_path) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        try:
            link = _link(body)
            ship, during = link.client.ship, list[int]()

            async def ship_and_write(batch: AuditBatch) -> AuditAck:
                if len(during) < 3:  # (an agent writes while the round's request is out)
                    assert not (await write(body, f"during{len(during)}.txt"))[0]
                    during.append(_head(body))
                return await ship(batch)

            link.client.ship = ship_and_write  # type: ignore[method-assign]
            async with anyio.create_task_group() as tg:
                tg.start_soon(link.run)
                await wait_until(lambda: body.brain_state == "connected")
                assert not (await write(body, "start.txt"))[0]
                await wait_until(lambda: len(during) == 3, timeout=10)
                await wait_until(lambda: link.shipped_through() >= during[-1], timeout=5)
                tg.cancel_scope.cancel()
            held = await _held_by_brain(tmp_path / "brain.db", body.audit.body_id)
            assert held == list(range(1, held[-1] + 1)) and held[-1] >= during[-1]
        finally:
            body.close()


async def test_leave_ships_events_written_while_it_ships(tmp_path: Path, home: Path) -> None:
    """`leave()` ships the whole chain (not a round): events committed while its first request is out go too."""
    async with brain_with_captain(tmp_path, max_audit_request_bytes=4096) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        try:
            link = _link(body)
            await link.register()
            for n in range(6):
                body.record_human(action="note", rationale=f"event {n} " + "r" * 800)
            ship, wrote = link.client.ship, list[int]()

            async def ship_and_write(batch: AuditBatch) -> AuditAck:
                if not wrote:
                    for n in range(3):
                        body.record_human(action="note", rationale=f"late {n}")
                    wrote.append(_head(body))
                return await ship(batch)

            link.client.ship = ship_and_write  # type: ignore[method-assign]
            assert await link.leave() is True
            assert await _held_by_brain(tmp_path / "brain.db", body.audit.body_id) == list(range(1, wrote[0] + 1))
        finally:
            body.close()


@pytest.mark.parametrize("mutating", [True, False])
async def test_leave_after_the_last_reply_ships_that_calls_event(tmp_path: Path, home: Path, mutating: bool) -> None:
    """As `serve_stdio` ends (stdin closed): the last call's reply is out, its commit asked for after the reply
    (`finish_soon`: a write's at once in the writer's thread, a read's `LAZY_FINISH_S` later), then `Body.leave()`
    ships the chain and deregisters. The last call's event must be in what it ships. Was a MEDIUM hole (found here,
    older than today's changes): the read's commit, still timed, came after `leave()` had read the chain, so the brain
    never had the body's last reads unless the workspace was served again; `Body.leave` now commits what is owed
    first."""
    async with brain_with_captain(tmp_path) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        try:
            link = _link(body)
            await link.register()
            body.replies.flushed = True  # (a transport that says when a reply is written, as stdio does)
            if mutating:
                outcome = await body.call_tool("write_file", {"path": "w.txt", "content": "y", "rationale": "r"})
            else:
                outcome = await body.call_tool("read_text_file", {"path": "f.txt", "rationale": "r"})
            assert not outcome.is_error
            body.replies.flushed = False  # (what `serve_stdio` does as the wire ends)
            body.replies.run()
            await body.leave()
            await body.audit_writer.finish()
            head = _head(body)
            held = await _held_by_brain(tmp_path / "brain.db", body.audit.body_id)
            assert held and held[-1] == head, (held, head)
        finally:
            body.close()


async def test_a_chain_pruned_mid_round_ships_what_it_kept_and_the_checkpoint_next_round(
    tmp_path: Path, home: Path
) -> None:
    """Retention runs while a round ships (between two of its batches), pruning what the brain has acknowledged
    (`through_at_most`, as `keep_retention` passes the link's mark): the round goes on through its bound, and the
    prune's checkpoint, written past the bound, goes out in the next round; the brain ends with every event."""
    async with brain_with_captain(tmp_path, max_audit_request_bytes=4096) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        try:
            link = _link(body)
            await link.register()
            for n in range(12):  # ~1 KB each: three batches or more under the cap
                body.record_human(action="note", rationale=f"event {n} " + "r" * 800)
            bound = _head(body)
            ship, pruned = link.client.ship, list[int]()

            async def ship_and_prune(batch: AuditBatch) -> AuditAck:
                if batch.events[0].seq > 1 and not pruned:  # (the round's second request: the first is marked)
                    through = link.shipped_through()
                    assert through >= 1
                    future = datetime.now(UTC) + timedelta(days=400)
                    pruned.append(body.audit.prune(retention_days=1, now=future, through_at_most=through))
                return await ship(batch)

            link.client.ship = ship_and_prune  # type: ignore[method-assign]
            assert await link.ship_pending(round_only=True) == bound
            assert pruned and pruned[0] >= 1
            head = _head(body)
            assert head == bound + 1, "the checkpoint, past the round's bound"
            assert await link.ship_pending(round_only=True) == head
            assert await _held_by_brain(tmp_path / "brain.db", body.audit.body_id) == list(range(1, head + 1))
        finally:
            body.close()
