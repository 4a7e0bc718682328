"""Snapshot storage: content-addressed objects, self-checking manifests, one lock.

    <state dir>/snapshots/
      lock                         flock: create, restore and prune exclusive; list and drill shared
      objects/ab/abcdef…           file contents and database chunks, by sha256; written once, read-only
      manifests/<id>.json          one per snapshot; carries the sha256 of its own canonical JSON
      tmp/                         objects being written; anything here under the lock is a leftover
      restore.journal              the plan of a restore swap in progress (see `_swap`)

An object is written to `tmp/` and renamed into place only when missing, so a reader never
sees half an object and an object, once there, is never rewritten. Nothing is fsync'd one
file at a time: `sync()` flushes the whole filesystem once, before a manifest names the
objects (one `syncfs` instead of ten thousand `fsync`s).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Generator, Iterable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ._manifest import Manifest, manifest_from_json, manifest_to_json
from .exceptions import SnapshotDamaged, SnapshotNotFound

_ID_RE = re.compile(r"^snap-(\d{8}T\d{6}\.\d{6})Z-[0-9a-f]{4}$")
_SMALL = 4 << 20
"""Files up to this size are read whole, hashed, and written only if missing; larger ones stream."""
_CHUNK = 1 << 20


def new_snapshot_id(now: datetime) -> str:
    """Sortable by time (microseconds, UTC) and unique: `snap-20250101T120000.123456Z-ab12`."""
    return f"snap-{now.astimezone(UTC):%Y%m%dT%H%M%S.%f}Z-{secrets.token_hex(2)}"


def snapshot_time(snapshot_id: str) -> datetime | None:
    """When a snapshot was taken, read from its ID; None if it is not a snapshot ID."""
    match = _ID_RE.match(snapshot_id)
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S.%f").replace(tzinfo=UTC)


class ObjectStore:
    """One workspace's snapshot directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.manifests = root / "manifests"
        self.tmp = root / "tmp"
        self.journal = root / "restore.journal"
        self._prefixes: set[str] = set()

    def ensure(self) -> None:
        for path in (self.root, self.objects, self.manifests, self.tmp):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)

    @contextmanager
    def locked(self, *, exclusive: bool = True, wait: bool = True) -> Generator[bool]:
        """Serialise writers across processes; the kernel drops the lock if the holder is killed.

        Yields whether the lock is held: with `wait=False`, False at once when another process holds it.
        """
        self.ensure()
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    # -- objects -----------------------------------------------------------------------

    def path(self, sha: str) -> Path:
        return self.objects / sha[:2] / sha

    def has(self, sha: str) -> bool:
        return os.path.exists(self.path(sha))

    def put_bytes(self, data: bytes) -> tuple[str, bool]:
        """Store `data`; returns its sha256 and whether a new object was written."""
        sha = hashlib.sha256(data).hexdigest()
        if self.has(sha):
            return sha, False
        tmp = self._tmp_name()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        self._publish(tmp, sha)
        return sha, True

    def put_fd(self, fd: int) -> tuple[str, int, bool]:
        """Store what `fd` reads to its end: sha256, size, whether a new object was written.

        The bytes hashed are the bytes stored, so a file changing while it is read still yields
        a consistent object (of whatever was read).
        """
        first = os.read(fd, _SMALL + 1)
        if len(first) <= _SMALL:
            sha, written = self.put_bytes(first)
            return sha, len(first), written
        digest = hashlib.sha256(first)
        size = len(first)
        tmp = self._tmp_name()
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
        try:
            os.write(out, first)
            while chunk := os.read(fd, _CHUNK):
                digest.update(chunk)
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
        finally:
            os.close(out)
        sha = digest.hexdigest()
        if self.has(sha):
            os.unlink(tmp)
            return sha, size, False
        self._publish(tmp, sha)
        return sha, size, True

    def _tmp_name(self) -> Path:
        return self.tmp / f"{secrets.token_hex(8)}.obj"

    def _publish(self, tmp: Path, sha: str) -> None:
        prefix = sha[:2]
        if prefix not in self._prefixes:
            (self.objects / prefix).mkdir(mode=0o700, exist_ok=True)
            self._prefixes.add(prefix)
        # Only under the exclusive lock, after `has` said missing: the rename never replaces an object.
        os.rename(tmp, self.path(sha))

    def verify(self, sha: str, size: int) -> None:
        """Rehash one object; `SnapshotDamaged` if it is missing, truncated or altered."""
        digest = hashlib.sha256()
        seen = 0
        try:
            with open(self.path(sha), "rb", buffering=0) as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
                    seen += len(chunk)
        except FileNotFoundError:
            raise SnapshotDamaged(f"object {sha[:12]} is missing from the snapshot store") from None
        if seen != size or digest.hexdigest() != sha:
            raise SnapshotDamaged(f"object {sha[:12]} is damaged (its content no longer matches its hash)")

    def copy_into(self, sha: str, dst_fd: int) -> None:
        """Copy an object's bytes to `dst_fd` in the kernel where it can."""
        src = os.open(self.path(sha), os.O_RDONLY | os.O_CLOEXEC)
        start = os.lseek(dst_fd, 0, os.SEEK_CUR)
        try:
            try:
                while os.copy_file_range(src, dst_fd, 1 << 30):
                    pass
                return
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
            # Start this object over by plain reads and writes (earlier chunks at `dst_fd` stay).
            os.lseek(src, 0, os.SEEK_SET)
            os.lseek(dst_fd, start, os.SEEK_SET)
            os.ftruncate(dst_fd, start)
            while chunk := os.read(src, _CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(dst_fd, view) :]
        finally:
            os.close(src)

    def sync(self) -> None:
        """Make everything written so far durable: one `syncfs` of the store's filesystem."""
        sync_filesystem(self.root)

    def sweep(self, live: set[str]) -> tuple[int, int]:
        """Delete every object no manifest references; returns (objects, bytes) freed."""
        freed = freed_bytes = 0
        if not self.objects.is_dir():
            return 0, 0
        for prefix in os.scandir(self.objects):
            if not prefix.is_dir(follow_symlinks=False):
                continue
            for obj in os.scandir(prefix.path):
                if obj.name not in live:
                    freed_bytes += obj.stat(follow_symlinks=False).st_size
                    os.unlink(obj.path)
                    freed += 1
        return freed, freed_bytes

    def clean_tmp(self) -> int:
        """Remove what a killed writer or drill left behind (call only under the exclusive lock)."""
        leftovers: list[str] = []
        if self.tmp.is_dir():
            leftovers += [entry.path for entry in os.scandir(self.tmp)]
        if self.manifests.is_dir():
            leftovers += [
                e.path for e in os.scandir(self.manifests) if e.name.startswith(".") and e.name.endswith(".tmp")
            ]
        for path in leftovers:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        return len(leftovers)

    # -- manifests ---------------------------------------------------------------------

    def manifest_path(self, snapshot_id: str) -> Path:
        if snapshot_time(snapshot_id) is None:
            raise SnapshotNotFound(f"'{snapshot_id}' is not a snapshot ID (see `swarm snapshot list`)")
        return self.manifests / f"{snapshot_id}.json"

    def ids(self) -> list[str]:
        """Every snapshot's ID, oldest first."""
        if not self.manifests.is_dir():
            return []
        found = [name[:-5] for name in os.listdir(self.manifests) if name.endswith(".json")]
        return sorted(i for i in found if snapshot_time(i) is not None)

    def write_manifest(self, manifest: Manifest) -> None:
        """Write atomically and durably: the manifest is the commit point of a snapshot."""
        path = self.manifest_path(manifest.id)
        data = manifest_to_json(manifest)
        tmp = self.manifests / f".{manifest.id}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        fsync_dir(self.manifests)

    def read_manifest(self, snapshot_id: str) -> Manifest:
        path = self.manifest_path(snapshot_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise SnapshotNotFound(
                f"no snapshot '{snapshot_id}' for this workspace (see `swarm snapshot list`)"
            ) from None
        return manifest_from_json(data, expected_id=snapshot_id)

    def delete_manifest(self, snapshot_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.manifest_path(snapshot_id))


def referenced(manifests: Iterable[Manifest]) -> set[str]:
    """Every object sha the given manifests need."""
    live: set[str] = set()
    for manifest in manifests:
        live.update(entry.sha256 for entry in manifest.entries if entry.sha256 is not None)
        for extra in manifest.extras:
            live.update(sha for sha, _ in extra.chunks)
    return live


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystem(path: Path) -> None:
    """`syncfs(2)` on the filesystem holding `path` (falls back to `sync()`)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = getattr(libc, "syncfs", None)
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)
