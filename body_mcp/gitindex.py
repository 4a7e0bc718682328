"""Which workspace paths git tracks, read from the repository's index file (git is never run on the host).

A tracked file is never a build artifact, whatever `.gitignore` says: that is what stops an
agent from laundering changes to source files through ignore rules. The index is parsed
here (versions 2, 3 and 4 of gitformat-index(5)), cached by the file's identity and mtime.
A worktree's `.git` file (`gitdir: …`) is followed. Anything unreadable reads as "nothing
tracked" only when there is no index at all; a damaged index is an error the caller sees.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

_HEADER = struct.Struct(">4sII")
_ENTRY_FIXED = 62
"""ctime, mtime (2×8), dev, ino, mode, uid, gid, size (6×4), sha-1 (20), flags (2)."""
_EXTENDED = 0x4000
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
    """The paths an index tracks (`/`-separated, relative to the work tree)."""
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
    return frozenset(paths)


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


class TrackedFiles:
    """The tracked paths of one work tree, re-read only when its index changes."""

    def __init__(self, workspace: Path) -> None:
        self._workspace = workspace
        self._cached: _Cached | None = None

    def paths(self) -> frozenset[str]:
        index = index_path(self._workspace)
        if index is None:
            return frozenset()
        try:
            st = os.stat(index)
        except FileNotFoundError:
            return frozenset()  # a repository with nothing added yet
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cached is None or self._cached.key != key:
            self._cached = _Cached(key=key, tracked=parse_index(index.read_bytes()))
        return self._cached.tracked
