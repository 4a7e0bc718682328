"""The SDK's per-message OpenTelemetry span: dropped when nothing traces the body, kept when a tracer is installed."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client
from mcp.server._otel import OpenTelemetryMiddleware  # pyright: ignore[reportPrivateUsage]
from opentelemetry import trace

from body_mcp.server import build_server

from ..conftest import make_body
from .helpers import call, ok

pytestmark = pytest.mark.anyio


class _InstalledProvider(trace.TracerProvider):
    """Stands for an exporter's provider (`opentelemetry-instrument` installs one before the body starts)."""

    def get_tracer(self, *args: object, **kwargs: object) -> trace.Tracer:
        return trace.NoOpTracer()


async def test_with_no_tracer_installed_the_body_serves_calls_without_the_sdks_span(
    workspace: Path, home: Path
) -> None:
    body = make_body(workspace, home)
    try:
        server = build_server(body)
        assert not any(isinstance(m, OpenTelemetryMiddleware) for m in server.middleware)
        async with Client(server) as client:
            ok(await call(client, "write_file", path="a.txt", content="x"))
    finally:
        body.close()


def test_with_a_tracer_installed_the_sdks_span_is_kept(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trace, "get_tracer_provider", _InstalledProvider)
    body = make_body(workspace, home)
    try:
        assert any(isinstance(m, OpenTelemetryMiddleware) for m in build_server(body).middleware)
    finally:
        body.close()
