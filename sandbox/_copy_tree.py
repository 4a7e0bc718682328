# pyright: strict
"""The copy backend's staging: copy the workspace (minus hidden paths), then diff the copy against it.

Deciding "untouched" must not read every file twice, and mtimes can be set back by the command. The inode
change time cannot: it is recorded for every copied entry right after copying, and an entry whose ctime is
unchanged after the run is untouched; any other entry is compared by mode and content.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from ._changes import created_tree, deleted_tree, differs, entry_type, join, new_entry, replaced, sort_changes
from ._interface import ChangeKind, EntryType, StagedChange
from .exceptions import StagedChangesUnreadable


@dataclass(kw_only=True)
class StagedCopy:
    """A copy of the workspace and what is needed to diff it afterwards."""

    root: Path
    ctimes: dict[str, int] = field(default_factory=dict[str, int])
    excluded: set[str] = field(default_factory=set[str])
    """Hidden paths (placeholders in the copy) and entries that cannot be copied (sockets, devices)."""


def copy_workspace(workspace: Path, root: Path, *, hidden: Collection[str]) -> StagedCopy:
    """Copy `workspace` into `root` (which must not exist) without hardlinks, following no symlink.

    Hidden paths get an empty placeholder (file or directory) for the sandbox to bind over; their content
    never leaves the workspace.
    """
    copy = StagedCopy(root=root, excluded=set(hidden))
    _copy_dir(str(workspace), str(root), "", copy)
    return copy


def _copy_dir(src_dir: str, dst_dir: str, rel: str, copy: StagedCopy) -> None:
    os.mkdir(dst_dir, 0o700)
    with os.scandir(src_dir) as entries:
        for entry in entries:
            child_rel = join(rel, entry.name)
            dst = os.path.join(dst_dir, entry.name)
            st = entry.stat(follow_symlinks=False)
            if child_rel in copy.excluded:
                if stat.S_ISDIR(st.st_mode):
                    os.mkdir(dst, 0o700)
                else:
                    open(dst, "xb").close()
                continue
            if stat.S_ISDIR(st.st_mode):
                _copy_dir(entry.path, dst, child_rel, copy)
                continue
            if stat.S_ISREG(st.st_mode):
                # Not shutil.copy2: its copystat (xattrs, flags) made a 10,000-file copy ten times slower.
                shutil.copyfile(entry.path, dst, follow_symlinks=False)
                _copy_mode_and_times(dst, st)
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(entry.path), dst)
            elif stat.S_ISFIFO(st.st_mode):
                os.mkfifo(dst, stat.S_IMODE(st.st_mode))
            else:
                # Sockets and devices cannot be copied meaningfully; they stay out of the diff.
                copy.excluded.add(child_rel)
                continue
            copy.ctimes[child_rel] = os.lstat(dst).st_ctime_ns
    # The mode last: a read-only directory must first receive its children.
    _copy_mode_and_times(dst_dir, os.lstat(src_dir))


def _copy_mode_and_times(path: str, st: os.stat_result) -> None:
    # Times too, so that make-like tools see the same staleness as in the workspace.
    os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def diff_copy(workspace: Path, copy: StagedCopy) -> list[StagedChange]:
    """The changes the copy now has relative to the workspace, sorted by path."""
    out: list[StagedChange] = []
    try:
        _diff_dir(str(workspace), str(copy.root), "", copy, out)
    except PermissionError as error:
        # Without root, a `chmod 000` left by the command hides what is below it: refuse, never guess.
        raise StagedChangesUnreadable(f"cannot read the staged changes: {error}") from error
    return sort_changes(out)


def _diff_dir(old_dir: str, new_dir: str, rel: str, copy: StagedCopy, out: list[StagedChange]) -> None:
    old_entries = _lstat_entries(old_dir)
    new_entries = _lstat_entries(new_dir)
    for name in sorted(old_entries.keys() | new_entries.keys()):
        child_rel = join(rel, name)
        if child_rel in copy.excluded:
            continue
        old_path, new_path = os.path.join(old_dir, name), os.path.join(new_dir, name)
        old, new = old_entries.get(name), new_entries.get(name)
        if new is None:
            assert old is not None
            deleted_tree(old_path, child_rel, old, out)
        elif old is None:
            created_tree(new_path, child_rel, new, out)
        elif entry_type(new) is not entry_type(old):
            out.extend(replaced(new_path, old_path, child_rel, new, old))
        elif entry_type(new) is EntryType.DIR:
            if stat.S_IMODE(new.st_mode) != stat.S_IMODE(old.st_mode):
                out.append(new_entry(new_path, child_rel, new, ChangeKind.MODIFIED))
            _diff_dir(old_path, new_path, child_rel, copy, out)
        elif copy.ctimes.get(child_rel) == new.st_ctime_ns:
            continue  # untouched since we copied it
        elif differs(new_path, old_path, new, old):
            out.append(new_entry(new_path, child_rel, new, ChangeKind.MODIFIED))


def _lstat_entries(directory: str) -> dict[str, os.stat_result]:
    with os.scandir(directory) as entries:
        return {entry.name: entry.stat(follow_symlinks=False) for entry in entries}
