# pyright: strict
"""Reading an overlayfs upper directory (mounted with `userxattr`) as a list of changes to the workspace.

The upper directory is the staged change set; the lower one is the real workspace, untouched. How overlayfs
records each operation there, as observed on these machines:
- a deletion is a whiteout, a 0/0 character device: "deleted", never a device to create;
- a directory deleted and then recreated is opaque (xattr `user.overlay.opaque` = "y"): none of the lower
  children show through any more, so those not in upper are deleted;
- a renamed directory is copied up (no `redirect_dir` with `userxattr`): a deleted tree and a created one;
- any write, chmod or touch copies the whole file up (no `metacopy` with `userxattr`), so an upper file may
  equal its lower one: entries are compared and only real differences (mode, content, target) reported.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ._changes import (
    created_tree,
    deleted_tree,
    differs,
    entry_type,
    is_whiteout,
    join,
    lstat_or_none,
    new_entry,
    replaced,
    sort_changes,
)
from ._interface import ChangeKind, EntryType, StagedChange
from .exceptions import StagedChangesUnreadable

_OPAQUE_XATTR = "user.overlay.opaque"
# Metadata that would make an upper entry mean something other than what it looks like. Neither should
# appear with userxattr; if one does, refusing to interpret the layer is the only safe answer.
_UNSAFE_XATTRS = ("user.overlay.redirect", "user.overlay.metacopy")


def read_upper(upper: Path, lower: Path) -> list[StagedChange]:
    """The changes the upper layer makes to the lower one, sorted by path."""
    out: list[StagedChange] = []
    try:
        _walk(str(upper), str(lower), "", opaque=False, out=out)
    except PermissionError as error:
        # Without root, a `chmod 000` left by the command hides what is below it: refuse, never guess.
        raise StagedChangesUnreadable(f"cannot read the staged changes: {error}") from error
    return sort_changes(out)


def _walk(upper_dir: str, lower_dir: str, rel: str, *, opaque: bool, out: list[StagedChange]) -> None:
    """Compare one upper directory with its lower counterpart, which exists and is a real directory."""
    seen: set[str] = set()
    with os.scandir(upper_dir) as entries:
        for entry in entries:
            seen.add(entry.name)
            child_rel = join(rel, entry.name)
            upper_st = entry.stat(follow_symlinks=False)
            lower_path = os.path.join(lower_dir, entry.name)
            lower_st = lstat_or_none(lower_path)
            if is_whiteout(upper_st):
                if lower_st is not None:
                    deleted_tree(lower_path, child_rel, lower_st, out)
                continue
            _refuse_unsafe_metadata(entry.path, child_rel)
            if lower_st is None:
                created_tree(entry.path, child_rel, upper_st, out)
            elif entry_type(upper_st) is not entry_type(lower_st):
                out.extend(replaced(entry.path, lower_path, child_rel, upper_st, lower_st))
            elif entry_type(upper_st) is EntryType.DIR:
                if stat.S_IMODE(upper_st.st_mode) != stat.S_IMODE(lower_st.st_mode):
                    out.append(new_entry(entry.path, child_rel, upper_st, ChangeKind.MODIFIED))
                # Below an opaque directory nothing of the lower layer shows through, at any depth.
                child_opaque = opaque or _is_opaque(entry.path)
                _walk(entry.path, lower_path, child_rel, opaque=child_opaque, out=out)
            elif differs(entry.path, lower_path, upper_st, lower_st):
                out.append(new_entry(entry.path, child_rel, upper_st, ChangeKind.MODIFIED))
    if opaque:
        with os.scandir(lower_dir) as entries:
            for entry in entries:
                if entry.name not in seen:
                    deleted_tree(entry.path, join(rel, entry.name), entry.stat(follow_symlinks=False), out)


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False  # ENODATA: not opaque


def _refuse_unsafe_metadata(path: str, rel: str) -> None:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return  # the filesystem has no xattrs at all: nothing unsafe either
    for name in _UNSAFE_XATTRS:
        if name in names:
            raise StagedChangesUnreadable(f"{rel}: overlay metadata {name} cannot be interpreted safely")
