"""Progress of a long call, for a client that asked for it: how long it has run, and what it has printed."""

from __future__ import annotations

import time

import anyio

from ._spec import ReportProgress


class OutputMeter:
    """Bytes a running command has printed so far (the sandbox tells it each chunk: `SandboxSpec.on_output`)."""

    def __init__(self) -> None:
        self.printed = 0

    def __call__(self, size: int) -> None:
        self.printed += size


async def report_progress(progress: ReportProgress, meter: OutputMeter, *, timeout_s: float, every_s: float) -> None:
    """Every `every_s` until cancelled: the seconds the command has run, of its timeout, and what it has printed."""
    started = time.monotonic()
    while True:
        await anyio.sleep(every_s)
        elapsed = time.monotonic() - started
        message = f"running for {elapsed:.0f} s, {meter.printed:,} bytes of output so far"
        try:
            await progress(elapsed, timeout_s, message)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return  # the client is gone: the command runs on, unreported
