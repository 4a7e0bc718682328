"""A call cancelled mid-flight (the kill switch cancels the agent's scope) aborts its HTTP request at once, and
no retry follows."""

from __future__ import annotations

import anyio
import pytest

from agent_runner import Provider
from tests.fakes.llm import FakeLLMServer, Hang

from .conftest import Sleeps, ask

pytestmark = pytest.mark.anyio


async def test_a_cancelled_call_closes_its_connection_within_a_second_and_is_not_retried(
    served: tuple[Provider, FakeLLMServer], sleeps: Sleeps
) -> None:
    provider, fake = served
    fake.script(Hang(), Hang())
    attempts: list[int] = []

    async def reserve(attempt: int) -> None:
        attempts.append(attempt)

    async with anyio.create_task_group() as group:
        group.start_soon(lambda: provider.complete(ask(), before_attempt=reserve))
        with anyio.fail_after(5):
            await fake.hanging.wait()
        group.cancel_scope.cancel()
    with anyio.fail_after(1):
        await fake.disconnected.wait()
    assert attempts == [1] and sleeps.waits == [] and len(fake.requests) == 1
    assert [served.completed for served in fake.bill.served] == [False]
