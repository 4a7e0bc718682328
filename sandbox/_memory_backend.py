# pyright: strict
"""A scripted sandbox for tests that need no bubblewrap (like pydantic-ai's `TestModel`).

The script decides what the "command" printed and changed; the changes' contents are materialised in a
real staging directory, so `source` paths are files the body can copy from, as with the real backends.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeAlias

import anyio
import anyio.to_thread

from ._changes import applicable_mode, sort_changes
from ._interface import Availability, ChangeKind, EntryType, RunResult, SandboxSpec, StagedChange
from ._staged import StagedDirRun, make_staging, remove_staging
from .exceptions import InvalidSandboxSpec

_DEFAULT_MODES = {EntryType.FILE: 0o644, EntryType.DIR: 0o755, EntryType.SYMLINK: 0o777, EntryType.SPECIAL: 0o644}


@dataclass(kw_only=True, frozen=True)
class ScriptedChange:
    """A change the scripted command makes, with its new content held in memory."""

    path: str
    kind: ChangeKind
    entry_type: EntryType = EntryType.FILE
    content: bytes = b""
    mode: int | None = None
    """Permission bits of the new entry; None for the usual default of its type."""
    symlink_target: str | None = None


ScriptOutcome: TypeAlias = tuple[RunResult, Sequence[ScriptedChange]]
Script: TypeAlias = Callable[[SandboxSpec], "ScriptOutcome | Awaitable[ScriptOutcome]"]


def scripted_result(*, exit_code: int = 0, stdout: str = "", stderr: str = "") -> RunResult:
    """A plain finished `RunResult`, for scripts."""
    return RunResult(
        exit_code=exit_code,
        stdout=stdout,
        stderr=stderr,
        stdout_truncated=False,
        stderr_truncated=False,
        timed_out=False,
        killed=False,
        duration_s=0.0,
    )


def _succeed(spec: SandboxSpec) -> ScriptOutcome:
    return scripted_result(), ()


class InMemorySandbox:
    """A `Sandbox` whose runs are scripted. `calls` records every spec it was given.

    An async script can wait (on an event, say) to stand for a long command: `kill_all()` then stops it and
    the run returns `killed=True` with no changes, as a real backend would.
    """

    def __init__(
        self,
        script: Script = _succeed,
        *,
        staging_root: Path | None = None,
        availability: Availability | None = None,
    ) -> None:
        self._script = script
        self._staging_root = staging_root
        self._availability = availability or Availability(ok=True, reason="in-memory: scripted, isolates nothing")
        self._running: set[anyio.CancelScope] = set()
        self.calls: list[SandboxSpec] = []

    @property
    def name(self) -> str:
        return "in-memory"

    def available(self) -> Availability:
        return self._availability

    def kill_all(self) -> None:
        for scope in list(self._running):
            scope.cancel()

    def close(self) -> None:
        """Nothing is kept between runs."""

    async def run(self, spec: SandboxSpec) -> StagedDirRun:
        """Run the script and materialise its changes; see `Sandbox.run`."""
        self.calls.append(spec)
        outcome: ScriptOutcome | None = None
        with anyio.CancelScope() as scope:
            self._running.add(scope)
            try:
                produced = self._script(spec)
                outcome = await produced if inspect.isawaitable(produced) else produced
            finally:
                self._running.discard(scope)
        if outcome is None:  # stopped by kill_all()
            outcome = dataclasses.replace(scripted_result(), exit_code=None, killed=True), ()
        result, scripted = outcome
        root = self._staging_root or Path(tempfile.gettempdir())
        staging = await anyio.to_thread.run_sync(make_staging, root)
        staged_run: StagedDirRun | None = None
        try:
            changes = await anyio.to_thread.run_sync(_materialise, staging, scripted)
            staged_run = StagedDirRun(result=result, changes=changes, staging=staging)
            return staged_run
        finally:
            if staged_run is None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(remove_staging, staging)


def _materialise(staging: Path, scripted: Sequence[ScriptedChange]) -> list[StagedChange]:
    changes: list[StagedChange] = []
    for change in scripted:
        rel = PurePosixPath(change.path)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise InvalidSandboxSpec(f"scripted change path must be workspace-relative: {change.path!r}")
        if change.kind is ChangeKind.DELETED:
            changes.append(
                StagedChange(
                    path=rel.as_posix(),
                    kind=change.kind,
                    entry_type=change.entry_type,
                    mode=None,
                    symlink_target=None,
                    source=None,
                )
            )
            continue
        source = staging.joinpath(*rel.parts)
        source.parent.mkdir(parents=True, exist_ok=True)
        requested = change.mode if change.mode is not None else _DEFAULT_MODES[change.entry_type]
        # Reported as the real backends report it: the special bits stripped, and said so.
        mode, stripped = applicable_mode(requested)
        if change.entry_type is EntryType.FILE:
            source.write_bytes(change.content)
            source.chmod(mode)
        elif change.entry_type is EntryType.DIR:
            source.mkdir(exist_ok=True)
            source.chmod(mode)
        elif change.entry_type is EntryType.SYMLINK:
            source.symlink_to(change.symlink_target or "")
        else:
            os.mkfifo(source, mode)
        changes.append(
            StagedChange(
                path=rel.as_posix(),
                kind=change.kind,
                entry_type=change.entry_type,
                mode=mode,
                symlink_target=change.symlink_target if change.entry_type is EntryType.SYMLINK else None,
                source=source,
                stripped_mode_bits=stripped,
            )
        )
    return sort_changes(changes)
