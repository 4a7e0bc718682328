"""`SharedReads`: reads of the same key asked for at once share one computation; nothing is kept after it."""

from __future__ import annotations

import anyio
import pytest

from brain_server.exceptions import StateBroken
from brain_server.shared_reads import SharedReads

pytestmark = pytest.mark.anyio


async def test_reads_of_one_key_asked_at_once_share_one_computation_and_a_later_read_computes_again() -> None:
    shared = SharedReads[str, int]()
    started, release = anyio.Event(), anyio.Event()
    computed: list[str] = []
    results: list[int] = []

    async def compute() -> int:
        computed.append("kpi")
        started.set()
        await release.wait()
        return len(computed)

    async def read() -> None:
        results.append(await shared.read("kpi", compute))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(read)
            await started.wait()
            for _ in range(3):
                group.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            release.set()
        assert results == [1, 1, 1, 1] and computed == ["kpi"]
        assert await shared.read("kpi", compute) == 2  # (ended: the next read computes afresh)


async def test_another_key_is_computed_on_its_own() -> None:
    shared = SharedReads[int, int]()
    release = anyio.Event()
    results: dict[int, int] = {}

    async def compute(key: int) -> int:
        await release.wait()
        return key * 10

    async def read(key: int) -> None:
        results[key] = await shared.read(key, lambda: compute(key))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(read, 1)
            group.start_soon(read, 2)
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert results == {1: 10, 2: 20}


async def test_an_error_reaches_every_reader_that_shared_the_computation() -> None:
    shared = SharedReads[str, int]()
    release = anyio.Event()
    errors: list[type[BaseException]] = []

    async def compute() -> int:
        await release.wait()
        raise StateBroken("the brain database is unusable")

    async def read() -> None:
        try:
            await shared.read("kpi", compute)
        except StateBroken as exc:
            errors.append(type(exc))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert errors == [StateBroken] * 3


async def test_a_reader_whose_computation_was_cancelled_under_it_computes_for_itself() -> None:
    shared = SharedReads[str, str]()
    started = anyio.Event()
    results: list[str] = []
    leader_scope = anyio.CancelScope()

    async def never() -> str:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("not reached")

    async def fresh() -> str:
        return "fresh"

    async def leader() -> None:
        with leader_scope:
            await shared.read("kpi", never)

    async def follower() -> None:
        results.append(await shared.read("kpi", fresh))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(leader)
            await started.wait()
            group.start_soon(follower)
            await anyio.wait_all_tasks_blocked()
            assert results == []  # (waiting on the leader's computation)
            leader_scope.cancel()
    assert results == ["fresh"]


async def test_with_a_max_age_a_result_is_kept_that_long_from_when_its_computation_began_and_an_error_never() -> None:
    now = [100.0]
    shared = SharedReads[str, int](max_age_s=2.0, clock=lambda: now[0])
    computed: list[float] = []

    async def compute() -> int:
        computed.append(now[0])
        now[0] += 0.5  # (the computation itself takes half a second)
        return len(computed)

    assert await shared.read("kpi", compute) == 1
    now[0] = 101.9
    assert await shared.read("kpi", compute) == 1, "begun 1.9 s ago: kept"
    assert await shared.read("usage", compute) == 2, "another key: its own"
    now[0] = 102.0
    assert await shared.read("kpi", compute) == 3, "begun 2 s ago: computed afresh"

    async def broken() -> int:
        raise StateBroken("the disk is gone")

    with pytest.raises(StateBroken):
        await shared.read("metrics", broken)
    assert await shared.read("metrics", compute) == 4
