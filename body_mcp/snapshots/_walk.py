"""Reading a workspace into a snapshot: the tree walk, the stat cache, the database and config copies.

The walk goes by directory descriptor (`scandir(fd)`, `openat(O_NOFOLLOW)`), never by path, so
a directory swapped for a symlink mid-walk is not followed out of the workspace. Symlinks are
recorded, not followed; FIFOs, sockets and devices are recorded as skipped.

A file whose `(size, mtime_ns, ino, ctime_ns)` equals its entry in the previous manifest keeps
that entry's sha256 without being read. A file changed within `RACY_NS` of the walk's start
is not given a cache key: a second write inside the same timestamp tick would leave all four
unchanged (git's "racily clean" problem), so such a file is read again next time.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._manifest import Entry, Extra, Manifest, Skipped
from ._store import ObjectStore
from .exceptions import SnapshotError

RACY_NS = 1_000_000_000
DB_CHUNK = 1 << 20
"""SQLite pages stay where they are, so fixed 1 MiB chunks of a backup dedupe well between snapshots."""
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK

Progress = Callable[[str, int, int], None]
"""(phase, done, total); total is 0 when unknown."""


@dataclass(kw_only=True)
class ScanResult:
    entries: list[Entry] = field(default_factory=list[Entry])
    skipped: list[Skipped] = field(default_factory=list[Skipped])
    root_mode: int = 0o755
    files_read: int = 0
    objects_written: int = 0
    bytes_written: int = 0


def is_excluded(rel: str, name: str, patterns: Sequence[str]) -> bool:
    """A pattern matches a path's name (`node_modules`) or its whole relative path (`build/*.o`)."""
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(rel, p) for p in patterns)


def scan_workspace(
    root: Path,
    store: ObjectStore | None,
    *,
    exclude: Sequence[str] = (),
    previous: Mapping[str, Entry] | None = None,
    progress: Progress | None = None,
) -> ScanResult:
    """Walk `root`; with a store, keep each file's content as an object (without one, only hash)."""
    result = ScanResult()
    racy_after = time.time_ns() - RACY_NS
    previous = previous or {}
    root_fd = os.open(root, _DIR_FLAGS)
    result.root_mode = stat.S_IMODE(os.fstat(root_fd).st_mode)
    stack: list[tuple[int, str]] = [(root_fd, "")]
    try:
        while stack:
            dir_fd, prefix = stack.pop()
            try:
                with os.scandir(dir_fd) as it:
                    children = sorted(it, key=lambda e: e.name)
                for child in children:
                    rel = prefix + child.name
                    if exclude and is_excluded(rel, child.name, exclude):
                        result.skipped.append(Skipped(path=rel, reason="excluded"))
                        continue
                    try:
                        st = child.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # deleted while we walked: it is simply not in this snapshot
                    mode = stat.S_IMODE(st.st_mode)
                    if stat.S_ISDIR(st.st_mode):
                        try:
                            sub = os.open(child.name, _DIR_FLAGS, dir_fd=dir_fd)
                        except (FileNotFoundError, NotADirectoryError):
                            continue
                        except PermissionError:
                            result.skipped.append(Skipped(path=rel, reason="unreadable"))
                            continue
                        result.entries.append(Entry(path=rel, type="dir", mode=mode))
                        stack.append((sub, rel + "/"))
                    elif stat.S_ISLNK(st.st_mode):
                        target = os.readlink(child.name, dir_fd=dir_fd)
                        result.entries.append(Entry(path=rel, type="symlink", mode=None, target=target))
                    elif stat.S_ISREG(st.st_mode):
                        entry = _file_entry(dir_fd, child.name, rel, st, store, previous.get(rel), racy_after, result)
                        if entry is not None:
                            result.entries.append(entry)
                            if progress is not None and len(result.entries) % 500 == 0:
                                progress("reading", len(result.entries), 0)
                    else:
                        result.skipped.append(Skipped(path=rel, reason="special"))
            finally:
                os.close(dir_fd)
    finally:
        for fd, _ in stack:
            os.close(fd)
    result.entries.sort(key=lambda e: e.parts)
    return result


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def _file_entry(
    dir_fd: int,
    name: str,
    rel: str,
    st: os.stat_result,
    store: ObjectStore | None,
    before: Entry | None,
    racy_after: int,
    result: ScanResult,
) -> Entry | None:
    mode = stat.S_IMODE(st.st_mode)
    key = _stat_key(st)
    cached = before is not None and before.stat == key and before.sha256 is not None
    if before is not None and cached and (store is None or store.has(str(before.sha256))):
        return Entry(path=rel, type="file", mode=mode, sha256=before.sha256, size=before.size, stat=key)
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except PermissionError:
        result.skipped.append(Skipped(path=rel, reason="unreadable"))
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            result.skipped.append(Skipped(path=rel, reason="special"))
            return None
        if store is not None:
            sha, size, written = store.put_fd(fd)
            result.objects_written += written
            result.bytes_written += size if written else 0
        else:
            sha, size = _hash_fd(fd)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    result.files_read += 1
    # Trust the stat key next time only if the file held still while read and is not racily fresh.
    steady = _stat_key(after) == key and size == st.st_size and st.st_ctime_ns < racy_after
    return Entry(path=rel, type="file", mode=mode, sha256=sha, size=size, stat=key if steady else None)


def _hash_fd(fd: int) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := os.read(fd, 1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


# -- extras: the state database and the config file ------------------------------------------


def snapshot_database(src: Path, dest: Path) -> int:
    """Copy a SQLite database consistently while others write to it (online backup API); returns bytes.

    The copy is one read transaction of `src`, written to a temporary file beside `dest` and renamed
    over it, so `dest` is always either absent, the old copy, or a complete new one.
    """
    if not src.is_file():
        raise SnapshotError(f"database {src} does not exist")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    # Read-write, though it only reads: a read-only connection to a WAL database leaves -wal and -shm
    # files behind (it may not delete them), which would look like a change to the next snapshot.
    source = sqlite3.connect(src, timeout=30)
    try:
        target = sqlite3.connect(tmp)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.rename(tmp, dest)
    return dest.stat().st_size


def _db_stat(path: Path) -> tuple[int, ...] | None:
    """A change key for a database and its WAL; None while either changed too recently to trust.

    No ctime here: SQLite running as root `fchown`s the WAL on every open, our own backup's included.
    Every write to the database or its WAL moves an mtime, which is what the key follows.
    """
    racy_after = time.time_ns() - RACY_NS
    key: list[int] = []
    for p in (path, path.with_name(path.name + "-wal")):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            key.extend((-1, 0, 0))
            continue
        if st.st_mtime_ns >= racy_after:
            return None
        key.extend((st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(key)


def store_chunks(store: ObjectStore, path: Path) -> tuple[tuple[tuple[str, int], ...], int, int]:
    """Keep a file as 1 MiB objects: (chunks, objects written, bytes written)."""
    chunks: list[tuple[str, int]] = []
    written = written_bytes = 0
    with open(path, "rb", buffering=0) as fh:
        while data := fh.read(DB_CHUNK):
            sha, new = store.put_bytes(data)
            chunks.append((sha, len(data)))
            written += new
            written_bytes += len(data) if new else 0
    return tuple(chunks), written, written_bytes


def store_database(store: ObjectStore, name: str, src: Path, before: Extra | None) -> tuple[Extra, int, int]:
    """Back up `src` into the store; an unchanged database reuses the previous snapshot's chunks."""
    key = _db_stat(src)
    if before is not None and key is not None and before.stat == key and all(store.has(s) for s, _ in before.chunks):
        return before, 0, 0
    tmp = store.tmp / f"{name}.backup"
    snapshot_database(src, tmp)
    try:
        chunks, written, written_bytes = store_chunks(store, tmp)
        size = tmp.stat().st_size
    finally:
        tmp.unlink(missing_ok=True)
    mode = stat.S_IMODE(src.stat().st_mode)
    extra = Extra(name=name, source=str(src), size=size, mode=mode, chunks=chunks, stat=key)
    return extra, written, written_bytes


def store_file(store: ObjectStore, name: str, src: Path) -> tuple[Extra, int, int]:
    chunks, written, written_bytes = store_chunks(store, src)
    st = src.stat()
    extra = Extra(
        name=name, source=str(src), size=sum(s for _, s in chunks), mode=stat.S_IMODE(st.st_mode), chunks=chunks
    )
    return extra, written, written_bytes


def write_extra(store: ObjectStore, extra: Extra, dest: Path) -> None:
    """Reassemble an extra at `dest` (which must not exist yet), verifying each chunk first."""
    for sha, size in extra.chunks:
        store.verify(sha, size)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        for sha, _ in extra.chunks:
            store.copy_into(sha, fd)
        os.fchmod(fd, extra.mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, dest)  # never replaces: `dest` appearing meanwhile is an error, not an overwrite
    finally:
        tmp.unlink()


# -- checking a restored tree (drill) ------------------------------------------------------


def compare_tree(root: Path, manifest: Manifest) -> list[str]:
    """Differences between a tree on disk and the manifest it should equal."""
    found = {e.path: e for e in scan_workspace(root, None).entries}
    problems: list[str] = []
    for want in manifest.entries:
        got = found.pop(want.path, None)
        if got is None:
            problems.append(f"{want.path} is missing")
        elif (got.type, got.mode, got.sha256, got.size, got.target) != (
            want.type,
            want.mode,
            want.sha256,
            want.size,
            want.target,
        ):
            problems.append(f"{want.path} differs from the manifest")
    problems += [f"{path} is not in the manifest" for path in sorted(found)]
    return problems


def check_database(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()
    except sqlite3.DatabaseError as exc:
        return [f"state.db copy does not open: {exc}"]
    finally:
        conn.close()
    return [] if result is not None and result[0] == "ok" else [f"state.db copy fails integrity_check: {result}"]
