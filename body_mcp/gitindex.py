"""Which workspace paths git tracks, read from the repository's index file (git is never run on the host).

A tracked file is never a build artifact, whatever `.gitignore` says: that is what stops an
agent from laundering changes to source files through ignore rules. The index is parsed
here (versions 2, 3 and 4 of gitformat-index(5)), cached by the file's identity and mtime.
A worktree's `.git` file (`gitdir: …`) is followed, and a split index's shared part
(`sharedindex.*`, the `link` extension) is read too; its entries and the split part's are
united, never subtracted, so an error can only make more paths count as tracked. No index
at all means nothing is tracked; an index that cannot be read (damaged, not a regular file,
too large) means *everything* is: no change is an uncounted artifact then.
"""

from __future__ import annotations

import logging
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

_HEADER = struct.Struct(">4sII")
_ENTRY_FIXED = 62
"""ctime, mtime (2×8), dev, ino, mode, uid, gid, size (6×4), sha-1 (20), flags (2)."""
_EXTENDED = 0x4000
_MAX_INDEX_BYTES = 512 * 1024 * 1024
logger = logging.getLogger(__name__)
_NAME_MASK = 0x0FFF


class GitIndexError(Exception):
    """The index exists but cannot be read as one."""


def index_path(workspace: Path) -> Path | None:
    """The index of the repository whose work tree is `workspace`, or None when it has none."""
    dot_git = workspace / ".git"
    try:
        if dot_git.is_dir():
            return dot_git / "index"
        if dot_git.is_file():
            line = dot_git.read_text(errors="replace").strip()
            if line.startswith("gitdir:"):
                gitdir = Path(line.removeprefix("gitdir:").strip())
                return (gitdir if gitdir.is_absolute() else workspace / gitdir) / "index"
    except OSError:
        return None
    return None


def parse_index(data: bytes) -> frozenset[str]:
    """The paths an index tracks (`/`-separated, relative to the work tree); `GitIndexError` if it is damaged."""
    return read_index(data)[0]


def read_index(data: bytes) -> tuple[frozenset[str], str | None]:
    """The paths an index lists, and the hex id of its shared index when it is a split one."""
    try:
        return _read_index(data)
    except (ValueError, IndexError, struct.error, UnicodeError) as exc:  # (a damaged index, however it breaks)
        raise GitIndexError(f"the index is damaged: {exc}") from None


def _read_index(data: bytes) -> tuple[frozenset[str], str | None]:
    if len(data) < _HEADER.size:
        raise GitIndexError("the index is shorter than its header")
    signature, version, count = _HEADER.unpack_from(data)
    if signature != b"DIRC" or version not in (2, 3, 4):
        raise GitIndexError(f"not a git index of a known version (signature {signature!r}, version {version})")
    paths: list[str] = []
    offset = _HEADER.size
    previous = b""
    for _ in range(count):
        if offset + _ENTRY_FIXED > len(data):
            raise GitIndexError("the index ends inside an entry")
        (flags,) = struct.unpack_from(">H", data, offset + 60)
        start = offset + _ENTRY_FIXED + (2 if version >= 3 and flags & _EXTENDED else 0)
        if version == 4:
            strip, start = _varint(data, start)
            end = data.index(b"\x00", start)
            if strip > len(previous):
                raise GitIndexError("a prefix-compressed path strips more than the previous one had")
            name = previous[: len(previous) - strip] + data[start:end]
            offset = end + 1
        else:
            length = flags & _NAME_MASK
            end = start + length if length < _NAME_MASK else data.index(b"\x00", start)
            name = data[start:end]
            entry_len = end - offset + 1
            offset += (entry_len + 7) // 8 * 8
        previous = name
        paths.append(name.decode(errors="surrogateescape"))
    shared: str | None = None
    while offset + 8 <= len(data) - 20:  # extensions, before the trailing checksum
        signature = data[offset : offset + 4]
        (size,) = struct.unpack_from(">I", data, offset + 4)
        if signature == b"link":
            if size < 20:
                raise GitIndexError("a link extension too short to name its shared index")
            shared = data[offset + 8 : offset + 28].hex()  # (SHA-1; a SHA-256 repository's is not found: fail safe)
        offset += 8 + size
    return frozenset(paths), shared


def _varint(data: bytes, offset: int) -> tuple[int, int]:
    """gitformat-index's offset encoding (each continuation adds one before shifting)."""
    byte = data[offset]
    offset += 1
    value = byte & 0x7F
    while byte & 0x80:
        byte = data[offset]
        offset += 1
        value = ((value + 1) << 7) | (byte & 0x7F)
    return value, offset


@dataclass
class _Cached:
    key: tuple[int, int, int, int]
    tracked: frozenset[str]


class _Everything(frozenset[str]):
    """Every path: what is tracked when the index cannot be read."""

    def __contains__(self, item: object) -> bool:
        return True


EVERYTHING: frozenset[str] = _Everything()


def _read_regular(path: Path) -> bytes:
    """A file's bytes, refusing anything but a regular file of sane size (a FIFO or `/dev/zero` never blocks us)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise GitIndexError(f"{path} is not a regular file")
        if st.st_size > _MAX_INDEX_BYTES:
            raise GitIndexError(f"{path} is larger than {_MAX_INDEX_BYTES} bytes")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(_MAX_INDEX_BYTES + 1)
    finally:
        os.close(fd)


class TrackedFiles:
    """The tracked paths of one work tree, re-read only when its index changes."""

    def __init__(self, workspace: Path) -> None:
        self._workspace = workspace
        self._cached: _Cached | None = None

    def paths(self) -> frozenset[str]:
        found = self._paths(read=True)
        assert found is not None
        return found

    def paths_if_read(self) -> frozenset[str] | None:
        """`paths()` when it needs no reading of the index (unchanged since it was read; a few `stat`s, fit for the
        event loop); None when the index must be read again."""
        return self._paths(read=False)

    def _paths(self, *, read: bool) -> frozenset[str] | None:
        index = index_path(self._workspace)
        if index is None:
            return frozenset()
        try:
            st = os.lstat(index)
        except FileNotFoundError:
            return frozenset()  # a repository with nothing added yet
        except OSError as exc:
            logger.warning("cannot read the git index %s (%s): every change counts", index, exc.strerror)
            return EVERYTHING
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cached is None or self._cached.key != key:
            if not read:
                return None
            try:
                tracked, shared = read_index(_read_regular(index))
                if shared is not None:
                    base, _ = read_index(_read_regular(index.parent / f"sharedindex.{shared}"))
                    tracked = tracked | base
            except (GitIndexError, OSError) as exc:
                logger.warning("cannot read the git index %s (%s): every change counts", index, exc)
                return EVERYTHING
            self._cached = _Cached(key=key, tracked=tracked)
        return self._cached.tracked
