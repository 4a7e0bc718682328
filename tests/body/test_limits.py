"""Blast radius, rolling windows, the circuit breaker, and races for the last unit of budget."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from body_mcp import Body, build_server
from body_mcp._limits_table import FILE_NAME as LIMITS_FILE
from body_mcp._limits_table import SLOTS, LimitsTable, TooManyInFlight
from body_mcp.exceptions import BlastRadiusExceeded, CircuitOpen, RateLimited
from shared_protocol import Impact

from ..conftest import make_body
from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def processes() -> Any:
    """Processes of their own for the tests of several bodies on one workspace, forked from a server that has imported
    this module and the body once (`forkserver`), not each a new Python that imports them again (`spawn`: a second or
    more of CPU each). Each still opens its body, its database and its tables itself: nothing is inherited but
    imported modules."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


async def _client_for(body: Body) -> Any:
    return Client(build_server(body))


async def test_calls_per_minute_refuses_the_call_past_the_limit_and_names_the_numbers(
    workspace: Path, home: Path
) -> None:
    clock = Clock()
    body = make_body(workspace, home, {"limits": {"calls_per_minute": 3}}, clock=clock)
    try:
        async with Client(build_server(body)) as client:
            for _ in range(3):
                ok(await call(client, "read_text_file", path="README.md"))
            data = refused(await call(client, "read_text_file", path="README.md"), "rate_limited")
            assert data["rule"] == "limits.calls_per_minute" and "3 of 3" in data["message"]
            clock.now += 61
            ok(await call(client, "read_text_file", path="README.md"))
    finally:
        body.close()


async def test_file_modifications_per_hour_are_counted_and_refused(workspace: Path, home: Path) -> None:
    clock = Clock()
    body = make_body(workspace, home, {"limits": {"file_mods_per_hour": 2}}, clock=clock)
    try:
        async with Client(build_server(body)) as client:
            ok(await call(client, "write_file", path="a.txt", content="a"))
            ok(await call(client, "write_file", path="b.txt", content="b"))
            data = refused(await call(client, "write_file", path="c.txt", content="c"), "rate_limited")
            assert data["rule"] == "limits.file_mods_per_hour"
            assert not (workspace / "c.txt").exists()
            ok(await call(client, "read_text_file", path="a.txt"))  # reads need no file budget
            clock.now += 3601
            ok(await call(client, "write_file", path="c.txt", content="c"))
    finally:
        body.close()


def test_money_per_hour_and_per_action(workspace: Path, home: Path) -> None:
    body = make_body(workspace, home, {"limits": {"breaker_breaches": 10}})
    with pytest.raises(BlastRadiusExceeded):
        body.limits.check_blast_radius(Impact(usd=100.01))
    with pytest.raises(BlastRadiusExceeded):
        body.limits.check_blast_radius(Impact(api_calls=1001))
    with pytest.raises(BlastRadiusExceeded):
        body.limits.check_blast_radius(Impact(files=11))
    body.limits.check_blast_radius(Impact(files=10, api_calls=1000, usd=100))
    first = body.limits.reserve(Impact(usd=6), mutating=True)
    with pytest.raises(RateLimited) as exc:
        body.limits.reserve(Impact(usd=5), mutating=True)
    assert exc.value.rule == "limits.usd_per_hour"
    body.limits.release(first)
    body.limits.reserve(Impact(usd=5), mutating=True)
    body.close()


async def test_refused_calls_give_their_reservation_back(workspace: Path, home: Path) -> None:
    body = make_body(workspace, home, {"limits": {"file_mods_per_hour": 1}})
    try:
        async with Client(build_server(body)) as client:
            refused(
                await call(client, "edit_file", path="README.md", edits=[{"old_text": "zz", "new_text": "y"}]),
                "edit_mismatch",
            )
            ok(await call(client, "write_file", path="a.txt", content="a"))
    finally:
        body.close()


def test_repeated_breaches_open_the_breaker_and_a_trial_after_cooldown_closes_it(workspace: Path, home: Path) -> None:
    clock = Clock()
    body = make_body(workspace, home, {"limits": {"breaker_breaches": 3, "breaker_cooldown_s": 60}}, clock=clock)
    try:
        for _ in range(3):
            with pytest.raises(BlastRadiusExceeded):
                body.limits.check_blast_radius(Impact(files=50))
        assert body.limits.breaker_state() == "open"
        with pytest.raises(CircuitOpen):
            body.limits.reserve(Impact(files=1), mutating=True)
        body.limits.reserve(Impact(), mutating=False)  # read-only calls are not blocked by the breaker
        clock.now += 61
        assert body.limits.breaker_state() == "half_open"
        trial = body.limits.reserve(Impact(files=1), mutating=True)
        assert trial.trial
        with pytest.raises(CircuitOpen):  # only one trial at a time
            body.limits.reserve(Impact(files=1), mutating=True)
        body.limits.settle(trial, Impact(files=1), failed=False)
        assert body.limits.breaker_state() == "closed"
    finally:
        body.close()


def test_consecutive_failures_open_the_breaker_and_a_failed_trial_reopens_it(workspace: Path, home: Path) -> None:
    clock = Clock()
    body = make_body(workspace, home, {"limits": {"breaker_consecutive_failures": 2}}, clock=clock)
    try:
        for _ in range(2):
            reservation = body.limits.reserve(Impact(files=1), mutating=True)
            body.limits.settle(reservation, Impact(), failed=True)
        assert body.limits.breaker_state() == "open"
        clock.now += 61
        trial = body.limits.reserve(Impact(files=1), mutating=True)
        body.limits.settle(trial, Impact(), failed=True)
        assert body.limits.breaker_state() == "open"
    finally:
        body.close()


def _race_for_last_unit(workspace: str, home: str, barrier: Any, results: Any) -> None:
    from body_mcp import Body, BodySettings
    from shared_protocol.config import parse_config

    body = Body(
        BodySettings(
            workspace=Path(workspace), home=Path(home), config=parse_config({"limits": {"file_mods_per_hour": 1}})
        )
    )
    barrier.wait()
    try:
        body.limits.reserve(Impact(files=1), mutating=True)
        results.put("granted")
    except RateLimited:
        results.put("refused")
    finally:
        body.close()


def test_two_processes_racing_for_the_last_file_modification_get_it_once(workspace: Path, home: Path) -> None:
    make_body(workspace, home).close()  # create the state first, so both racers open the same database
    ctx = processes()
    for _ in range(2):
        for leftover in (home / "workspaces").glob(f"*/{LIMITS_FILE}"):
            # The winner of the last round exited holding its reservation (it never settled): start afresh.
            leftover.unlink()
        barrier = ctx.Barrier(2)
        results = ctx.Queue()
        procs = [
            ctx.Process(target=_race_for_last_unit, args=(str(workspace), str(home), barrier, results))
            for _ in range(2)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(120)
        outcomes = sorted(results.get(timeout=5) for _ in procs)
        assert outcomes == ["granted", "refused"]


async def test_two_concurrent_callers_in_one_body_cannot_both_take_the_last_unit(workspace: Path, home: Path) -> None:
    import anyio

    body = make_body(workspace, home, {"limits": {"file_mods_per_hour": 1}})
    results: list[bool] = []
    try:
        async with Client(build_server(body)) as client:

            async def writer(name: str) -> None:
                r = await call(client, "write_file", path=name, content="x")
                results.append(bool(r.is_error))

            async with anyio.create_task_group() as tg:
                tg.start_soon(writer, "one.txt")
                tg.start_soon(writer, "two.txt")
        assert sorted(results) == [False, True]
        assert (workspace / "one.txt").exists() != (workspace / "two.txt").exists()
    finally:
        body.close()


def _reserve_and_die(workspace: str, home: str, now: float, files: int, cooldown: int) -> None:
    """A body that reserves and dies without settling (its process exits here)."""
    from body_mcp import Body, BodySettings
    from shared_protocol.config import parse_config

    config = parse_config(
        {"limits": {"file_mods_per_hour": 1, "breaker_consecutive_failures": 1, "breaker_cooldown_s": cooldown}}
    )
    body = Body(BodySettings(workspace=Path(workspace), home=Path(home), config=config), clock=lambda: now)
    body.limits.reserve(Impact(files=files), mutating=True)
    os._exit(0)


def _die_holding_a_reservation(workspace: Path, home: Path, now: float, *, files: int = 1, cooldown: int = 60) -> None:
    proc = processes().Process(target=_reserve_and_die, args=(str(workspace), str(home), now, files, cooldown))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 0


def test_a_reservation_of_a_body_that_died_is_counted_as_done_at_once(workspace: Path, home: Path) -> None:
    clock = Clock()
    make_body(workspace, home).close()
    _die_holding_a_reservation(workspace, home, clock.now)
    body = make_body(workspace, home, {"limits": {"file_mods_per_hour": 1}}, clock=clock)
    try:
        used = {b.name: b.used for b in body.limits.budgets()}
        assert used["file_mods_per_hour"] == 1 and used["calls_per_minute"] == 1  # reclaimed, counted as done
        with pytest.raises(RateLimited, match="1 of 1 file modifications"):
            body.limits.reserve(Impact(files=1), mutating=True)
        clock.now += 3600
        body.limits.reserve(Impact(files=1), mutating=True)
    finally:
        body.close()


def test_a_live_body_keeps_its_reservation_until_the_one_day_backstop(workspace: Path, home: Path) -> None:
    clock = Clock()
    body = make_body(workspace, home, {"limits": {"file_mods_per_hour": 1}}, clock=clock)
    try:
        long_run = body.limits.reserve(Impact(files=1), mutating=True)  # e.g. a command running for long
        clock.now += 3 * 3600  # a long run, or a laptop waking from suspend: still this call's
        with pytest.raises(RateLimited, match="1 of 1"):
            body.limits.reserve(Impact(files=1), mutating=True)
        body.limits.settle(long_run, Impact(files=1), failed=False)
        body.limits.reserve(Impact(), mutating=False)
        clock.now += 86_401  # a slot never given back (a bug) is reclaimed after a day
        leaked = body.limits.reserve(Impact(files=1), mutating=True)
        clock.now += 86_401
        assert {b.name: b.used for b in body.limits.budgets()}["file_mods_per_hour"] == 1
        body.limits.settle(leaked, Impact(files=1), failed=False)  # late: counted again, never lost
        assert {b.name: b.used for b in body.limits.budgets()}["file_mods_per_hour"] == 2
    finally:
        body.close()


def test_a_call_whose_slot_was_reclaimed_still_counts_what_it_did_and_feeds_the_breaker(
    workspace: Path, home: Path
) -> None:
    clock = Clock()
    config = {"limits": {"file_mods_per_hour": 50, "breaker_consecutive_failures": 1, "breaker_cooldown_s": 60}}
    body = make_body(workspace, home, config, clock=clock)
    try:
        run = body.limits.reserve(Impact(), mutating=True)  # run_command plans 0 files
        clock.now += 86_401
        body.limits.budgets()  # another call reclaims the slot (counted as done with 0 files)
        body.limits.extend(run, Impact(files=40))  # measured 40: counted at once, the slot is gone
        body.limits.settle(run, Impact(files=40), failed=True)
        assert {b.name: b.used for b in body.limits.budgets()}["file_mods_per_hour"] == 80  # twice: never lost
        assert body.limits.breaker_state() == "open"  # the failure counted
        clock.now += 61
        trial = body.limits.reserve(Impact(), mutating=True)
        assert trial.trial
        clock.now += 86_401
        body.limits.budgets()  # the trial's slot is reclaimed: the breaker re-opens
        body.limits.settle(trial, Impact(), failed=False)  # but the trial did succeed: it closes
        assert body.limits.breaker_state() == "closed"
    finally:
        body.close()


def test_a_lost_breaker_trial_reopens_the_breaker(workspace: Path, home: Path) -> None:
    clock = Clock()
    config = {"limits": {"breaker_consecutive_failures": 1, "breaker_cooldown_s": 60}}
    body = make_body(workspace, home, config, clock=clock)
    try:
        body.limits.settle(body.limits.reserve(Impact(files=1), mutating=True), Impact(), failed=True)
        clock.now += 61
        body.close()
        _die_holding_a_reservation(workspace, home, clock.now, files=0)  # took the half-open trial, then died
        body = make_body(workspace, home, config, clock=clock)
        with pytest.raises(CircuitOpen, match="breaker is open"):  # re-opened, its cool-down started again
            body.limits.reserve(Impact(files=1), mutating=True)
        clock.now += 61
        assert body.limits.reserve(Impact(files=1), mutating=True).trial
    finally:
        body.close()


def test_a_slot_is_freed_only_by_its_own_call(tmp_path: Path) -> None:
    table = LimitsTable(tmp_path / "limits")
    other = LimitsTable(tmp_path / "limits")  # a second body of the same workspace
    try:
        with table:
            slot, token = table.take(expires=1010.0, files=1, api_calls=0, usd_micro=500_000, trial=False)
        with other:
            assert other.usage(1005.0).files == 1 and other.usage(1005.0).usd == 0.5
            expired = other.usage(1011.0)  # reclaimed: counted as done with all it had reserved
            assert (expired.calls, expired.files, expired.usd) == (1, 1, 0.5)
            again, new_token = other.take(expires=1020.0, files=2, api_calls=0, usd_micro=0, trial=False)
        assert again == slot and new_token != token
        with table:
            table.free(slot, token)  # the expired holder cannot free the new holder's slot
            assert table.usage(1015.0).files == 3
            table.free(slot, new_token)
            assert table.usage(1015.0).files == 1
            for _ in range(SLOTS):
                table.take(expires=1030.0, files=0, api_calls=0, usd_micro=0, trial=False)
            with pytest.raises(TooManyInFlight, match=f"{SLOTS} calls are already in flight"):
                table.take(expires=1030.0, files=0, api_calls=0, usd_micro=0, trial=False)
    finally:
        table.close()
        other.close()


@pytest.mark.parametrize("seed", range(40))
def test_the_windows_equal_a_brute_force_count_whatever_the_clock_does(tmp_path: Path, seed: int) -> None:
    """Random calls and clock moves (pauses, minute and hour boundaries, steps back) against a model."""
    import random

    rng = random.Random(seed)
    table = LimitsTable(tmp_path / "limits")
    events: list[tuple[int, int, int]] = []  # (second counted at, minute counted at, files)
    now = 6_000_000.0 + rng.random() * 100
    newest_second, newest_minute = 0, 0
    try:
        with table:
            for _ in range(400):
                move = rng.random()
                if move < 0.6:
                    now += rng.random() * 3
                elif move < 0.8:
                    now += rng.random() * 120
                elif move < 0.9:
                    now += rng.random() * 4000
                else:
                    now -= rng.random() * (30 if rng.random() < 0.5 else 5000)  # the clock steps back
                table.move_to(now)
                newest_second, newest_minute = max(newest_second, int(now)), max(newest_minute, int(now // 60))
                files = rng.randrange(3)
                table.count(now, second=int(now), calls=1, files=files, api_calls=0, usd_micro=0)
                # The model: a call counts at its second if that is inside the window, at the newest second
                # if the clock is behind the window; files count in the newest minute.
                inside = newest_second - 60 < int(now) <= newest_second
                events.append((int(now) if inside else newest_second, newest_minute, files))
                used = table.usage(now)
                head_s, head_m = max(int(now), newest_second), max(int(now // 60), newest_minute)
                assert used.calls == sum(1 for s, _, _ in events if head_s - 60 < s <= head_s)
                assert used.files == sum(f for _, m, f in events if head_m - 60 < m <= head_m)
    finally:
        table.close()


def test_a_damaged_limits_table_starts_empty(tmp_path: Path) -> None:
    (tmp_path / "limits").write_bytes(b"\x01" * 100)
    table = LimitsTable(tmp_path / "limits")
    try:
        with table:
            assert table.usage(1000.0).calls == 0
            assert table.breaker().state == "closed"
    finally:
        table.close()


async def test_a_cancelled_call_is_audited_and_gives_its_slot_back(workspace: Path, home: Path) -> None:
    import anyio

    body = make_body(workspace, home)
    try:
        holding, release = anyio.Event(), anyio.Event()

        async def command_holding_the_workspace() -> None:
            async with body.workspace_lock:
                holding.set()
                await release.wait()

        async def cancel_once_queued(scope: anyio.CancelScope) -> None:
            with anyio.fail_after(5):  # (anyio's lock says who waits, but offers nothing to wait on for it)
                while body.workspace_lock.statistics().tasks_waiting == 0:
                    await anyio.sleep(0.01)
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(command_holding_the_workspace)
            with anyio.fail_after(5):
                await holding.wait()
            with anyio.CancelScope() as write:  # the write waits behind the command, and is cancelled there
                tg.start_soon(cancel_once_queued, write)
                await body.call_tool("write_file", {"path": "a.txt", "content": "x", "rationale": "waits"})
            assert write.cancelled_caught
            release.set()
        event = body.audit.tail(1)[0]
        assert (event.tool, event.outcome, event.code) == ("write_file", "failed", "cancelled")
        used = {b.name: b.used for b in body.limits.budgets()}
        assert used["calls_per_minute"] == 1 and used["file_mods_per_hour"] == 0  # settled: counted, not held
        assert not (workspace / "a.txt").exists()
    finally:
        body.close()


def test_a_table_held_too_long_by_another_process_refuses_instead_of_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    from body_mcp import _limits_table

    table = LimitsTable(tmp_path / "limits")
    holder = os.open(tmp_path / "limits", os.O_RDWR)  # another open file: flock excludes it like a process
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        monkeypatch.setattr(_limits_table, "LOCK_TIMEOUT_S", 0.2)
        with pytest.raises(TimeoutError, match="held by another process"), table:
            pass
        fcntl.flock(holder, fcntl.LOCK_UN)
        with table:  # free again: the thread lock was not left held by the timeout
            assert table.usage(1000.0).calls == 0
    finally:
        os.close(holder)
        table.close()


def test_a_slot_of_a_process_whose_pid_now_names_another_process_is_reclaimed(tmp_path: Path) -> None:
    previous = LimitsTable(tmp_path / "limits")
    previous._started = 12345  # pyright: ignore[reportPrivateUsage]  # an earlier process, same pid
    try:
        with previous:
            previous.take(expires=10**9, files=5, api_calls=0, usd_micro=0, trial=False)
    finally:
        previous.close()
    table = LimitsTable(tmp_path / "limits")  # this process: same pid, its own start time
    try:
        with table:
            used = table.usage(1000.0)
            assert (used.calls, used.files) == (1, 5)  # reclaimed at once: counted as done, not held
            assert table.take(expires=2000.0, files=0, api_calls=0, usd_micro=0, trial=False)[0] == 0
    finally:
        table.close()


def test_a_damaged_breaker_state_reads_as_open_and_recovers_through_a_trial(workspace: Path, home: Path) -> None:
    import struct

    from body_mcp import _limits_table

    clock = Clock()
    body = make_body(workspace, home, {"limits": {"breaker_cooldown_s": 60}}, clock=clock)
    try:
        table = body.limits._table  # pyright: ignore[reportPrivateUsage]
        struct.pack_into("<q", table._map, _limits_table._STATE_AT, 3)  # pyright: ignore[reportPrivateUsage]
        assert body.limits.breaker_state() == "half_open"  # open, and opened_at (0) is long past
        trial = body.limits.reserve(Impact(files=1), mutating=True)
        assert trial.trial
        body.limits.settle(trial, Impact(files=1), failed=False)
        assert body.limits.breaker_state() == "closed"
    finally:
        body.close()


async def test_a_call_cancelled_before_it_runs_changes_nothing(workspace: Path, home: Path) -> None:
    import anyio

    body = make_body(workspace, home)
    try:
        with anyio.CancelScope() as scope:
            scope.cancel()  # the workspace lock is free: taking it is still where a cancelled call stops
            await body.call_tool("write_file", {"path": "a.txt", "content": "x", "rationale": "cancelled"})
        assert not (workspace / "a.txt").exists()
        event = body.audit.tail(1)[0]
        assert (event.tool, event.outcome, event.code) == ("write_file", "failed", "cancelled")
        assert not body.workspace_lock.locked()
    finally:
        body.close()


def test_a_cancelled_trial_reopens_the_breaker(workspace: Path, home: Path) -> None:
    clock = Clock()
    body = make_body(workspace, home, {"limits": {"breaker_consecutive_failures": 1}}, clock=clock)
    try:
        body.limits.settle(body.limits.reserve(Impact(files=1), mutating=True), Impact(), failed=True)
        clock.now += 61
        trial = body.limits.reserve(Impact(files=1), mutating=True)
        body.limits.settle(trial, Impact(), failed=False, cancelled=True)  # proved nothing
        assert body.limits.breaker_state() == "open"
    finally:
        body.close()


async def test_a_call_whose_audit_append_fails_still_settles_its_budget(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = make_body(workspace, home, {"limits": {"file_mods_per_hour": 1}})
    try:

        def disk_full(*_args: object, **_kwargs: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(body.audit, "append", disk_full)
        with pytest.raises(OSError, match="No space left"):
            await body.call_tool("write_file", {"path": "a.txt", "content": "x", "rationale": "r"})
        monkeypatch.undo()
        from body_mcp import _limits_table

        table = body.limits._table  # pyright: ignore[reportPrivateUsage]
        occupancy = table._map[_limits_table._OCCUPANCY_AT : _limits_table._SLOTS_AT]  # pyright: ignore[reportPrivateUsage]
        assert occupancy.count(1) == 0  # its slot was freed: settled, not left in flight for a day
        used = {b.name: b.used for b in body.limits.budgets()}
        assert (used["calls_per_minute"], used["file_mods_per_hour"]) == (1, 1)  # and what it did still counts
        with pytest.raises(RateLimited, match="1 of 1 file modifications"):
            body.limits.reserve(Impact(files=1), mutating=True)
    finally:
        body.close()


def test_opening_a_table_held_too_long_by_another_process_refuses_instead_of_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    from body_mcp import _limits_table

    LimitsTable(tmp_path / "limits").close()
    holder = os.open(tmp_path / "limits", os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        monkeypatch.setattr(_limits_table, "LOCK_TIMEOUT_S", 0.2)
        with pytest.raises(TimeoutError, match="held by another process"):
            LimitsTable(tmp_path / "limits")
    finally:
        os.close(holder)


def test_money_alone_is_held_in_the_money_window_and_never_counted_as_a_tool_call(workspace: Path, home: Path) -> None:
    clock = Clock()
    config = {"limits": {"usd_per_hour": 1, "max_usd_per_action": 0.7, "calls_per_minute": 1, "breaker_breaches": 10}}
    body = make_body(workspace, home, config, clock=clock)
    try:
        held = body.limits.reserve_spend(0.6)
        used = {b.name: b.used for b in body.limits.budgets()}
        assert used["usd_per_hour"] == pytest.approx(0.6) and used["calls_per_minute"] == 0
        with pytest.raises(RateLimited, match=r"\$0.60 of \$1.00 spent in the last hour; this call needs \$0.50") as e:
            body.limits.reserve_spend(0.5)
        assert e.value.rule == "limits.usd_per_hour"
        with pytest.raises(BlastRadiusExceeded, match=r"\$0.71 \(limit \$0.70\)"):
            body.limits.reserve_spend(0.71)
        # The one tool call a minute is still there: money holds took none of it.
        body.limits.settle(body.limits.reserve(Impact(), mutating=False), Impact(), failed=False)
        body.limits.settle_spend(held, 0.25)  # cost less than held: the window counts what it cost
        used = {b.name: b.used for b in body.limits.budgets()}
        assert used["usd_per_hour"] == pytest.approx(0.25) and used["calls_per_minute"] == 1
        body.limits.release(body.limits.reserve_spend(0.7))  # given back: counts for nothing
        assert {b.name: b.used for b in body.limits.budgets()}["usd_per_hour"] == pytest.approx(0.25)
        assert body.limits.breaker_state() == "closed"
        clock.now += 3660
        assert {b.name: b.used for b in body.limits.budgets()}["usd_per_hour"] == 0
    finally:
        body.close()


def _hold_money_and_die(workspace: str, home: str, now: float) -> None:
    """A runner that holds money on the workspace's limits and dies without settling."""
    from body_mcp import Body, BodySettings
    from shared_protocol.config import SwarmConfig

    body = Body(BodySettings(workspace=Path(workspace), home=Path(home), config=SwarmConfig()), clock=lambda: now)
    body.limits.reserve_spend(0.4)
    os._exit(0)


def test_money_held_by_a_process_that_died_is_counted_as_spent_but_not_as_a_call(workspace: Path, home: Path) -> None:
    clock = Clock()
    make_body(workspace, home).close()
    proc = processes().Process(target=_hold_money_and_die, args=(str(workspace), str(home), clock.now))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 0
    body = make_body(workspace, home, clock=clock)
    try:
        used = {b.name: b.used for b in body.limits.budgets()}
        assert used["usd_per_hour"] == pytest.approx(0.4) and used["calls_per_minute"] == 0
    finally:
        body.close()
