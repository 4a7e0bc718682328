"""A command's output, kept with its audit event to be read back: `read_command_output`, `swarm audit output`.

A `run_command` result shows the start and the end of a long stream; all that was captured of it (up to
`[sandbox] max_output_bytes` per stream) is kept here, so the agent or a human can read the rest. A stream
is stored by the call's audit transaction (its row is one of the call's `Writes`), inline in `state.db`
when small, else in a file under `outputs/` written (fsync'd under power-loss durability) before that
commit, as undo keeps its large pre-images. Each records its sha256, checked before it is served. Outputs
are kept as long as audit events are (`[audit] retention_days`), then pruned.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import anyio
import anyio.to_thread

from shared_protocol import OutputStream
from shared_protocol.privacy import KEY_STORE_FILE, PrivacyConfig, Protector, SqliteSubjectKeys

from ._db import StateDB, Writes
from .exceptions import OutputDamaged, OutputUnavailable
from .state import StatePaths
from .undo import INLINE_MAX

_ACTION_ID = re.compile(r"act_[0-9a-f]+")
_SECONDS_PER_DAY = 86_400


@dataclass(kw_only=True, frozen=True)
class KeptOutput:
    """One stream of one command, as kept."""

    action_id: str
    stream: OutputStream
    size: int
    """Bytes kept (its text, UTF-8)."""
    printed: int
    """Bytes the command printed on the stream; more than `size` when the capture was capped."""
    truncated: bool
    """The capture stopped at `[sandbox] max_output_bytes`: the rest was dropped."""
    sha256: str


class OutputStore:
    """The kept outputs of one workspace's commands, in its `state.db` and `outputs/`."""

    def __init__(self, db: StateDB, *, directory: Path, privacy: Protector | None = None) -> None:
        """`privacy`: personal data in what is kept is encrypted per subject (`[privacy]`), and decrypted again
        when read back while its subject's key exists."""
        self._db = db
        self._dir = directory
        self._owns_db = False
        self._privacy = privacy if privacy is not None and privacy.enabled else None
        self._owns_privacy = False

    @classmethod
    def open(cls, paths: StatePaths, privacy: PrivacyConfig | None = None) -> OutputStore:
        """A store with a database connection of its own (the CLI's); `close` it, or use it as a context manager."""
        protector = Protector(privacy, SqliteSubjectKeys(paths.dir / KEY_STORE_FILE)) if privacy is not None else None
        store = cls(StateDB(paths.db), directory=paths.outputs, privacy=protector)
        store._owns_db = True
        store._owns_privacy = protector is not None
        return store

    def close(self) -> None:
        if self._owns_db:
            self._db.close()
        if self._owns_privacy and self._privacy is not None:
            self._privacy.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def keep(
        self,
        writes: Writes,
        *,
        action_id: str,
        stream: OutputStream,
        data: bytes,
        printed: int,
        truncated: bool,
    ) -> KeptOutput:
        """Store one stream with the call's audit event (`writes` are committed with it); what is kept has its
        personal data encrypted (`size` and `sha256` are of what is kept)."""
        if self._privacy is not None:
            data = self._privacy.protect(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
        sha = hashlib.sha256(data).hexdigest()
        inline: bytes | None = data
        if len(data) > INLINE_MAX:
            self._write_file(self._file(action_id, stream), data)
            inline = None
        writes.add(
            "INSERT INTO command_outputs (action_id, stream, ts, size, printed, truncated, sha256, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (action_id, stream, time.time(), len(data), printed, int(truncated), sha, inline),
        )
        return KeptOutput(
            action_id=action_id, stream=stream, size=len(data), printed=printed, truncated=truncated, sha256=sha
        )

    def get(self, action_id: str, stream: OutputStream) -> tuple[KeptOutput, bytes]:
        """The kept stream and its bytes, checked against their hash; refuses when none is kept or it is damaged."""
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT size, printed, truncated, sha256, data FROM command_outputs WHERE action_id = ? AND stream = ?",
                (action_id, stream),
            ).fetchone()
        if row is None:
            raise OutputUnavailable(
                f"no {stream} is kept for '{action_id}': it is not the action_id of a run_command that ran, or its "
                "output has passed the audit retention"
            )
        size, printed, truncated, sha, inline = row
        kept = KeptOutput(
            action_id=action_id,
            stream=stream,
            size=int(size),
            printed=int(printed),
            truncated=bool(truncated),
            sha256=str(sha),
        )
        try:
            data = bytes(inline) if inline is not None else self._file(action_id, stream).read_bytes()
        except FileNotFoundError:
            raise OutputDamaged(f"the kept {stream} of {action_id} is missing from the state directory") from None
        if hashlib.sha256(data).hexdigest() != kept.sha256:
            raise OutputDamaged(f"the kept {stream} of {action_id} does not match its recorded hash: it is not served")
        if self._privacy is not None and b"[pii:" in data:
            data = self._privacy.reveal(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
            kept = dataclasses.replace(kept, size=len(data))
        return kept, data

    def migrate_privacy(self, protector: Protector) -> int:
        """`swarm privacy migrate`: every kept stream, inline or in a file, with its personal data encrypted as
        `keep` encrypts a new one; the number rewritten. A stream in a file is rewritten in three steps, each
        safe to be killed after: the protected text is written beside it (`.NAME.migrate`, as `keep` writes a
        file), the row's `size` and `sha256` are updated to it, then it replaces the file. A run finding a
        `.migrate` file whose hash is the row's finishes that last step; any other is an abandoned first step,
        removed."""
        self._finish_migrated_files()
        with self._db.read() as conn:
            rows = conn.execute("SELECT action_id, stream, sha256, data FROM command_outputs").fetchall()
        inline: list[tuple[bytes, int, str, str, str]] = []
        files = 0
        for action_id, stream, sha, data in rows:
            path = self._file(str(action_id), stream)
            try:
                old = bytes(data) if data is not None else path.read_bytes()
            except FileNotFoundError:
                continue  # (served as damaged: nothing to protect)
            if hashlib.sha256(old).hexdigest() != sha:
                continue  # (damaged, or changed by someone else: left for `swarm audit output` to refuse)
            text = old.decode("utf-8", "surrogateescape")
            protected = protector.protect(text)
            if protected == text:
                continue
            new = protected.encode("utf-8", "surrogateescape")
            new_sha = hashlib.sha256(new).hexdigest()
            if data is not None:
                inline.append((new, len(new), new_sha, action_id, stream))
                continue
            staged = path.with_name(f".{path.name}.migrate")
            self._write_file(staged, new)
            with self._db.write() as conn:
                conn.execute(
                    "UPDATE command_outputs SET size = ?, sha256 = ? WHERE action_id = ? AND stream = ? AND sha256 = ?",
                    (len(new), new_sha, action_id, stream, sha),
                )
            os.replace(staged, path)
            files += 1
        if inline:
            with self._db.write() as conn:
                conn.executemany(
                    "UPDATE command_outputs SET data = ?, size = ?, sha256 = ? WHERE action_id = ? AND stream = ?",
                    inline,
                )
        return len(inline) + files

    def _finish_migrated_files(self) -> None:
        try:
            staged = [Path(e.path) for e in os.scandir(self._dir) if e.name.endswith(".migrate")]
        except FileNotFoundError:
            return
        for path in staged:
            name = path.name[1 : -len(".migrate")]
            action_id, _, stream = name.partition(".")
            with self._db.read() as conn:
                row = conn.execute(
                    "SELECT sha256 FROM command_outputs WHERE action_id = ? AND stream = ? AND data IS NULL",
                    (action_id, stream),
                ).fetchone()
            if row is not None and hashlib.sha256(path.read_bytes()).hexdigest() == row[0]:
                os.replace(path, self._file(action_id, stream))
            else:
                path.unlink(missing_ok=True)

    def kept_texts(self) -> Iterator[tuple[str, str, str]]:
        """Every kept stream as it is stored (action_id, stream, text), inline or in a file; a missing file is
        skipped (`swarm privacy export`)."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT action_id, stream, data FROM command_outputs ORDER BY ts").fetchall()
        for action_id, stream, data in rows:
            try:
                raw = bytes(data) if data is not None else self._file(str(action_id), stream).read_bytes()
            except FileNotFoundError:
                continue
            yield str(action_id), str(stream), raw.decode("utf-8", "replace")

    def prune(self, *, older_than: float) -> int:
        """Delete what was kept before `older_than` (a time.time()); the number of streams deleted."""
        with self._db.write() as conn:
            in_files = conn.execute(
                "SELECT action_id, stream FROM command_outputs WHERE ts < ? AND data IS NULL", (older_than,)
            ).fetchall()
            deleted = int(conn.execute("DELETE FROM command_outputs WHERE ts < ?", (older_than,)).rowcount)
        for action_id, stream in in_files:
            self._file(str(action_id), stream).unlink(missing_ok=True)
        # A file whose call never committed (the body died before its audit event was journaled) has no row.
        for path in self._old_files(older_than):
            path.unlink(missing_ok=True)
        return deleted

    def _old_files(self, older_than: float) -> Iterator[Path]:
        try:
            entries = list(os.scandir(self._dir))
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < older_than:
                    yield Path(entry.path)
            except FileNotFoundError:
                continue

    def _file(self, action_id: str, stream: str) -> Path:
        if not _ACTION_ID.fullmatch(action_id) or stream not in ("stdout", "stderr"):
            raise ValueError(f"not an output's name: {action_id!r} {stream!r}")  # (ids come from our own rows)
        return self._dir / f"{action_id}.{stream}"

    def _write_file(self, path: Path, data: bytes) -> None:
        self._dir.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            if self._db.durability == "power_loss":
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)


async def keep_outputs_pruned(
    store: OutputStore,
    *,
    retention_days: int,
    stop: anyio.Event,
    interval_s: float = 86_400.0,
    now: Callable[[], float] = time.time,
    on_error: Callable[[Exception], object] | None = None,
) -> None:
    """Prune outputs past the audit retention at start and then every `interval_s` until `stop`."""

    def prune() -> None:
        store.prune(older_than=now() - retention_days * _SECONDS_PER_DAY)

    while not stop.is_set():
        try:
            await anyio.to_thread.run_sync(prune)
        except Exception as exc:  # noqa: BLE001 - handed to on_error (logged): the body keeps serving
            if on_error is not None:
                on_error(exc)
        with anyio.move_on_after(interval_s):
            await stop.wait()
