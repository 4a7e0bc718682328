# pyright: strict
"""Building the change list: entry types, whole-tree creations and deletions, content comparison, ordering."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ._interface import ChangeKind, EntryType, StagedChange

_CHUNK = 1024 * 1024
#: Never applied to the workspace: a setuid-root copy of a binary there is a privilege escalation on the host.
SPECIAL_MODE_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX


def entry_type(st: os.stat_result) -> EntryType:
    """The type of an entry from its `lstat`."""
    if stat.S_ISREG(st.st_mode):
        return EntryType.FILE
    if stat.S_ISDIR(st.st_mode):
        return EntryType.DIR
    if stat.S_ISLNK(st.st_mode):
        return EntryType.SYMLINK
    return EntryType.SPECIAL


def is_whiteout(st: os.stat_result) -> bool:
    """An overlayfs whiteout: a character device 0/0 in the upper layer, meaning "deleted"."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def lstat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def applicable_mode(mode: int) -> tuple[int, int]:
    """The permission bits of `mode` that may be applied, and the setuid, setgid and sticky bits removed."""
    perm = stat.S_IMODE(mode)
    return perm & ~SPECIAL_MODE_BITS, perm & SPECIAL_MODE_BITS


def new_entry(path: str, rel: str, st: os.stat_result, kind: ChangeKind) -> StagedChange:
    """A created or modified entry whose new version lives at `path` in the staging area."""
    kind_of_entry = entry_type(st)
    mode, stripped = applicable_mode(st.st_mode)
    return StagedChange(
        path=rel,
        kind=kind,
        entry_type=kind_of_entry,
        mode=mode,
        symlink_target=os.readlink(path) if kind_of_entry is EntryType.SYMLINK else None,
        source=Path(path),
        stripped_mode_bits=stripped,
    )


def deleted_entry(rel: str, st: os.stat_result) -> StagedChange:
    return StagedChange(
        path=rel, kind=ChangeKind.DELETED, entry_type=entry_type(st), mode=None, symlink_target=None, source=None
    )


def created_tree(path: str, rel: str, st: os.stat_result, out: list[StagedChange]) -> None:
    """Report `path` and, for a directory, everything below it as created."""
    out.append(new_entry(path, rel, st, ChangeKind.CREATED))
    if stat.S_ISDIR(st.st_mode):
        with os.scandir(path) as entries:
            for entry in entries:
                child = entry.stat(follow_symlinks=False)
                # A whiteout inside a new directory hides nothing the workspace has: not a change.
                if not is_whiteout(child):
                    created_tree(entry.path, join(rel, entry.name), child, out)


def deleted_tree(path: str, rel: str, st: os.stat_result, out: list[StagedChange]) -> None:
    """Report the workspace entry `path` and, for a directory, everything below it as deleted."""
    out.append(deleted_entry(rel, st))
    if stat.S_ISDIR(st.st_mode):
        with os.scandir(path) as entries:
            for entry in entries:
                deleted_tree(entry.path, join(rel, entry.name), entry.stat(follow_symlinks=False), out)


def replaced(new_path: str, old_path: str, rel: str, new: os.stat_result, old: os.stat_result) -> list[StagedChange]:
    """An entry whose type changed: the old tree is deleted, then the new one created."""
    out: list[StagedChange] = []
    deleted_tree(old_path, rel, old, out)
    created_tree(new_path, rel, new, out)
    return out


def differs(new_path: str, old_path: str, new: os.stat_result, old: os.stat_result) -> bool:
    """Whether two non-directory entries of the same type differ in mode or content (times do not count)."""
    if stat.S_IMODE(new.st_mode) != stat.S_IMODE(old.st_mode):
        return True
    if stat.S_ISREG(new.st_mode):
        return new.st_size != old.st_size or not same_bytes(new_path, old_path)
    if stat.S_ISLNK(new.st_mode):
        return os.readlink(new_path) != os.readlink(old_path)
    return stat.S_IFMT(new.st_mode) != stat.S_IFMT(old.st_mode) or new.st_rdev != old.st_rdev


def same_bytes(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            chunk_a = fa.read(_CHUNK)
            if chunk_a != fb.read(_CHUNK):
                return False
            if not chunk_a:
                return True


def sort_changes(changes: Iterable[StagedChange]) -> list[StagedChange]:
    """Sort by path components (a directory right before its children); a deletion before a creation."""
    return sorted(changes, key=lambda c: (c.path.split("/"), c.kind is not ChangeKind.DELETED))
