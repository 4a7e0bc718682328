"""`swarm agents up` supervises every configured agent: each runs as its own `swarm agent run` process, one that
dies (kill -9) is restarted and says so on stderr, and SIGTERM stops them all."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import anyio
import pytest

from tests.runner.stack import FIX, Stack, stack

pytestmark = pytest.mark.anyio


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def started(s: Stack, agent: str, *, after: int = 0, timeout_s: float = 60) -> int:
    """The pid of the `after`-th (0: first) start of `agent` the supervisor announced."""
    with anyio.fail_after(timeout_s):
        while True:
            found = re.findall(rf"started {agent} \(pid (\d+)", s.log("up").read_text())
            if len(found) > after:
                return int(found[after])
            await anyio.sleep(0.1)


async def test_agents_up_restarts_an_agent_that_dies_and_sigterm_stops_all(tmp_path: Path) -> None:
    async with stack(tmp_path, agents=["worker-1", "worker-2"]) as s:
        s.script(FIX)
        with s.log("up").open("w") as log:
            up = await anyio.open_process(s.cli_argv("agents", "up"), env=s.env(), stderr=log)
            async with up:
                one, two = await started(s, "worker-1"), await started(s, "worker-2")
                # Both are up and listening to the brain before one is shot.
                with anyio.fail_after(60):
                    while "works for" not in s.log("up").read_text() or s.log("up").read_text().count("works for") < 2:
                        await anyio.sleep(0.2)
                os.kill(one, signal.SIGKILL)
                again = await started(s, "worker-1", after=1)
                assert again != one and alive(again) and alive(two)
                assert re.search(r"worker-1 exited with -9; restarting", s.log("up").read_text())

                up.send_signal(signal.SIGTERM)
                with anyio.fail_after(30):
                    code = await up.wait()
        assert code == 0, s.log("up").read_text()
        with anyio.fail_after(10):
            while alive(again) or alive(two):
                await anyio.sleep(0.1)
        assert "worker-2 exited" not in s.log("up").read_text(), "only the one killed was restarted"
