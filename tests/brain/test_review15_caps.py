"""Review of issue 15 (item 9): a streamed request body (no Content-Length) over the cap is refused on the routes
whose handler reads no body too (heartbeat, deregister), as a declared one is, and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from brain_server import Brain

from .helpers import BrainClient, ok, refused
from .test_request_limits import KB, snapshot

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("path", ["/v1/bodies/body-a/heartbeat", "/v1/bodies/body-a/deregister"])
async def test_a_streamed_body_over_the_cap_is_413_on_a_route_that_reads_none(
    api: BrainClient, brain: Brain, path: str
) -> None:
    register = {"body_id": "body-a", "workspace": "/w", "hostname": "h", "version": "1"}
    ok(await api.post("/v1/bodies/register", register, as_="body"))
    before = await snapshot(brain)
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for n in range(1_000):  # 16 MB if it were all taken
            sent.append(n)
            yield b"x" * 16 * KB

    response = await api.client.post(path, content=endless(), headers=api.headers("body"))
    refused(response, 413, "payload_too_large")
    assert len(sent) <= 6, f"read {len(sent) * 16} KB of a body capped at 64 KB"
    assert await snapshot(brain) == before
