"""A runner's pytest acceptance re-run, with the body's reporter: the verdict from pytest's results, not the exit code.

The code under test runs in the check's process and can end it with any exit code (`shared_protocol.verdict`). So
when the runner re-runs a task's acceptance command (its own call naming the task, `swarm/task`) and that command
is a pytest run (`pytest_start`), the body runs it:

- with `-p swarm_verdict_<random hex>`: the reporter (`_pytest_reporter.py`), copied for this run alone into a fresh
  directory under the agent's check dir, mounted at `/run/swarm/verdict-<hex>` and put on `PYTHONPATH` (after any
  the config passes); its name is drawn now, so no module the workspace holds can stand in for it;
- with a pipe (`SWARM_VERDICT_FD`) the reporter writes each event to as it happens, which the body reads while the
  command runs: what pytest reported is out of the process before any exit hook of the code under test runs;
- with `PYTEST_DISABLE_PLUGIN_AUTOLOAD=1`: no plugin the environment declares (a `pytest11` entry point in a
  `*.dist-info` the model wrote) is loaded; the plugins a project needs are named with `-p` in its acceptance
  command or its pytest config (`addopts = "-p xdist"`).

The audit event's `detail.report` holds the verdict (`CheckReport`), and so does the command's result; the audit
event's `arguments.argv` stays the acceptance command as the task has it (the brain compares it).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import threading
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio

from sandbox import SANDBOX_RUN_DIR, SandboxSpec, WritableMount
from shared_protocol import RunCommandArgs
from shared_protocol.verdict import (
    MAX_REPORT_BYTES,
    REPORTER_PREFIX,
    VERDICT_FD_VARIABLE,
    CheckReport,
    instrumented,
    pytest_start,
    read_report,
)

from ._spec import ToolContext

REPORTER_SOURCE = (Path(__file__).parent / "_pytest_reporter.py").read_text()
_DRAIN_AFTER_S = 2.0
"""Once the command has ended, its processes are gone (the sandbox's pid namespace): the pipe ends at once."""


def reports_verdict(ctx: ToolContext[RunCommandArgs]) -> bool:
    """The runner's own re-run of a task's acceptance command, which is a pytest run Swarm can instrument."""
    return not ctx.from_model and ctx.task_id is not None and pytest_start(ctx.args.argv) is not None


class _Drain(threading.Thread):
    """Reads the pipe to its end (every writer closed it), keeping at most `MAX_REPORT_BYTES` (past that:
    `truncated`, drained still); owns the read end and closes it."""

    def __init__(self, fd: int) -> None:
        super().__init__(name="swarm-verdict-report", daemon=True)
        self.fd = fd
        self.data = bytearray()
        self.truncated = False
        self.ended = False

    def run(self) -> None:
        try:
            while chunk := os.read(self.fd, 65536):
                room = MAX_REPORT_BYTES - len(self.data)
                if len(chunk) > room:
                    self.truncated = True
                self.data += chunk[: max(room, 0)]
            self.ended = True
        except OSError:
            pass
        finally:
            os.close(self.fd)


@dataclass(kw_only=True)
class PytestReport:
    """One re-run's reporter: the spec that loads it, and (`judge`) the verdict of what it wrote."""

    spec: SandboxSpec
    drain: _Drain

    def judge(self, exit_code: int | None) -> CheckReport:
        drain = self.drain
        if drain.is_alive() or not drain.ended:
            return CheckReport(
                verdict="failed",
                reason="the report did not end once the command had: something kept its pipe open",
                exit_code=exit_code,
            )
        return read_report(bytes(drain.data), exit_code=exit_code, truncated=drain.truncated)


@asynccontextmanager
async def pytest_report(check_root: Path, spec: SandboxSpec) -> AsyncGenerator[PytestReport]:
    """`spec` with the reporter loaded and its pipe passed; the pipe is read (a thread) while the block runs the
    command, and closed on the body's side when the block ends, so that its end comes with the command's."""
    token = secrets.token_hex(8)
    module = f"{REPORTER_PREFIX}{token}"
    directory = check_root / f"verdict-{token}"
    directory.mkdir(mode=0o700, parents=True)
    read_fd, write_fd = os.pipe()
    drain = _Drain(read_fd)
    try:
        plugin = directory / f"{module}.py"
        plugin.write_text(REPORTER_SOURCE)
        plugin.chmod(0o444)
        target = SANDBOX_RUN_DIR / f"verdict-{token}"
        env = dict(spec.env)
        env["PYTHONPATH"] = ":".join(p for p in (env.get("PYTHONPATH", ""), str(target)) if p)
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        env[VERDICT_FD_VARIABLE] = str(write_fd)
        report = PytestReport(
            spec=dataclasses.replace(
                spec,
                argv=instrumented(spec.argv, module),
                env=env,
                writable_mounts=[*spec.writable_mounts, WritableMount(source=directory.resolve(), target=target)],
                pass_fds=[*spec.pass_fds, write_fd],
            ),
            drain=drain,
        )
        drain.start()
        yield report
    finally:
        os.close(write_fd)
        if drain.ident is None:
            os.close(read_fd)  # (never started: nobody owns it)
        else:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(drain.join, _DRAIN_AFTER_S)
        shutil.rmtree(directory, ignore_errors=True)


__all__ = ["REPORTER_SOURCE", "PytestReport", "pytest_report", "reports_verdict"]
