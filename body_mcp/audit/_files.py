"""The chain's files outside the database, and the key file's format.

    audit.key       the HMAC key: a header line, then 32 bytes (0600; never in the database)
    audit.anchor    the chain's head, tagged (`_anchor`)
    audit.journal   events durable before their commit (`_journal`)
    audit.verified  how far the chain has been verified, tagged (`_anchor`): start-up verifies from there
    audit.lock      held shared by every open store, exclusively by `swarm audit reset`

The key file's header says the anchor is tagged. A key file of 32 bare bytes is from before anchors were
tagged: while it is, an untagged anchor is read as before; the first check that verifies the chain writes
the anchor tagged and then the header (`AuditStore`), and from then on an untagged anchor is forged. Taking
the header away again needs the key itself: whoever can read it can rewrite the whole chain anyway.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

KEY_HEADER = b"swarm audit key v2\n"
KEY_LEN = 32


class KeyDamaged(ValueError):
    """`audit.key` holds neither format."""


@dataclass(frozen=True, slots=True)
class KeyFile:
    key: bytes
    legacy: bool
    """32 bare bytes, from before anchors were tagged."""


@dataclass(kw_only=True, frozen=True)
class AuditFiles:
    """Where one workspace's chain keeps what is not in its database."""

    key: Path
    anchor: Path
    journal: Path
    checkpoint: Path
    lock: Path

    @classmethod
    def in_dir(cls, directory: Path) -> AuditFiles:
        return cls(
            key=directory / "audit.key",
            anchor=directory / "audit.anchor",
            journal=directory / "audit.journal",
            checkpoint=directory / "audit.verified",
            lock=directory / "audit.lock",
        )

    @property
    def chain(self) -> tuple[Path, ...]:
        """What a reset moves aside with the database (the lock stays: it is the reset's own)."""
        return (self.key, self.anchor, self.journal, self.checkpoint)


def read_key(path: Path) -> KeyFile | None:
    """The key, or None when the file does not exist; `KeyDamaged` when it holds neither format."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) == len(KEY_HEADER) + KEY_LEN and data.startswith(KEY_HEADER):
        return KeyFile(key=data[len(KEY_HEADER) :], legacy=False)
    if len(data) == KEY_LEN:
        return KeyFile(key=data, legacy=True)
    raise KeyDamaged(f"{path} is damaged (it holds {len(data)} bytes, not a key)")


def create_key(path: Path) -> bytes:
    """A new key in an owner-only file, created once (atomically: no reader sees it half-written)."""
    _publish(path, KEY_HEADER + secrets.token_bytes(KEY_LEN), replace=False)
    found = read_key(path)  # (two stores creating it at once: the first link wins, both read it)
    assert found is not None
    return found.key


def upgrade_key(path: Path, key: bytes) -> None:
    """Write the header in front of a legacy key (the same key): from now on the anchor must be tagged."""
    _publish(path, KEY_HEADER + key, replace=True)


def _publish(path: Path, data: bytes, *, replace: bool) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    sync_dir(path.parent)


def sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def hold_shared(lock: Path) -> int:
    """A descriptor holding `lock` shared (the caller closes it): a reset waits for it, and it for a reset."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Held:
    """`lock`, held exclusively (`held_exclusively`)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def share(self) -> None:
        """Hold it shared instead, so that a store this process opens next can take it too."""
        fcntl.flock(self._fd, fcntl.LOCK_SH)


@contextlib.contextmanager
def held_exclusively(lock: Path) -> Generator[Held]:
    """`lock` held exclusively, or `BlockingIOError` at once if any store has the chain open."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield Held(fd)
    finally:
        os.close(fd)


def set_aside(paths: Sequence[Path], into: Path) -> None:
    """Move each of `paths` that exists into the new directory `into` (same file system: renames), durably."""
    into.mkdir(mode=0o700)
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, into / path.name)
    sync_dir(into)
    sync_dir(into.parent)
