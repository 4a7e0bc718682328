"""Blast radius, rolling windows, the circuit breaker, and races for the last unit of budget."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from body_mcp import Body, build_server
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
    ctx = multiprocessing.get_context("spawn")
    for _ in range(2):
        for leftover in (home / "workspaces").glob("*/limits"):
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
            proc.join(30)
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


def test_a_reservation_left_by_a_crashed_body_expires_counted_as_done(workspace: Path, home: Path) -> None:
    clock = Clock()
    crashed = make_body(workspace, home, {"limits": {"file_mods_per_hour": 1}}, clock=clock)
    crashed.limits.reserve(Impact(files=1), mutating=True)  # and never settles: the body "dies" here
    crashed.close()
    body = make_body(workspace, home, {"limits": {"file_mods_per_hour": 1}}, clock=clock)
    try:
        with pytest.raises(RateLimited, match="1 of 1 file modifications"):
            body.limits.reserve(Impact(files=1), mutating=True)
        clock.now += 601  # expired: no longer in flight, but what it may have done still counts this hour
        with pytest.raises(RateLimited, match="1 of 1 file modifications"):
            body.limits.reserve(Impact(files=1), mutating=True)
        clock.now += 3600
        body.limits.reserve(Impact(files=1), mutating=True)
    finally:
        body.close()


def test_a_slot_is_freed_only_by_its_own_call(tmp_path: Path) -> None:
    from body_mcp._limits_table import SLOTS, LimitsTable, TooManyInFlight

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


def test_the_windows_slide_bucket_by_bucket_and_start_over_after_a_pause(tmp_path: Path) -> None:
    from body_mcp._limits_table import LimitsTable

    table = LimitsTable(tmp_path / "limits")
    try:
        with table:
            start = 6_000_000.0  # a whole minute
            table.usage(start)
            for n in range(120):  # one call a second for two minutes, one file a minute
                now = start + n
                table.usage(now)
                table.count(
                    second=int(now),
                    minute=int(now // 60),
                    calls=1,
                    files=int(n % 60 == 0),
                    api_calls=0,
                    usd_micro=250_000,
                )
                used = table.usage(now)
                assert used.calls == min(n + 1, 60)  # the last 60 seconds
                assert used.files == n // 60 + 1  # the last 60 minutes
                assert used.usd == pytest.approx((n + 1) * 0.25)
            assert table.usage(start + 119 + 59).calls == 1  # the window moved on: one second left in it
            assert table.usage(start + 119 + 60).calls == 0
            assert table.usage(start + 3600).files == 1  # the first minute fell out of the hour
            assert table.usage(start + 7200).files == 0  # a long pause: the window starts over
            table.count(second=int(start), minute=int(start // 60), calls=1, files=5, api_calls=0, usd_micro=0)
            assert table.usage(start + 7200).files == 0  # too old to count
    finally:
        table.close()


def test_a_damaged_limits_table_starts_empty(tmp_path: Path) -> None:
    from body_mcp._limits_table import LimitsTable

    (tmp_path / "limits").write_bytes(b"\x01" * 100)
    table = LimitsTable(tmp_path / "limits")
    try:
        with table:
            assert table.usage(1000.0).calls == 0
            assert table.breaker().state == "closed"
    finally:
        table.close()


def test_a_lost_breaker_trial_reopens_the_breaker_when_it_expires(workspace: Path, home: Path) -> None:
    clock = Clock()
    config = {"limits": {"breaker_consecutive_failures": 1, "breaker_cooldown_s": 60}}
    body = make_body(workspace, home, config, clock=clock)
    try:
        body.limits.settle(body.limits.reserve(Impact(files=1), mutating=True), Impact(), failed=True)
        clock.now += 61
        assert body.limits.reserve(Impact(files=1), mutating=True).trial  # and its body dies with it
        with pytest.raises(CircuitOpen, match="a trial call is in progress"):
            body.limits.reserve(Impact(files=1), mutating=True)
        clock.now += 601  # the trial's reservation expires: the breaker re-opens, its cool-down starts again
        with pytest.raises(CircuitOpen, match="breaker is open"):
            body.limits.reserve(Impact(files=1), mutating=True)
        clock.now += 61
        assert body.limits.reserve(Impact(files=1), mutating=True).trial
    finally:
        body.close()
