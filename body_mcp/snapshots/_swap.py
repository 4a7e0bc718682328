"""Restoring a tree: swap the tree built beside the workspace in, atomically, and recover from a crash.

The restored tree is built (see `_build`) in a sibling directory (`.<name>.swarm-restore-<token>`, same parent,
so the same filesystem), flushed, then exchanged with the workspace by
`renameat2(RENAME_EXCHANGE)`: one system call, so a reader (or a crash) sees the old tree or
the new one, never a mix. Where the filesystem or kernel lacks it, two renames stand in
(workspace aside, new tree in), with a short window where the workspace path is absent.

A journal written before each step makes a killed restore finish or roll back on the next
call (`recover`), decided by inode: the workspace path holding the new tree's inode means the
swap happened (finish: carry excluded paths over, delete the old tree); the old inode means it
did not (delete the half-built tree); no workspace at all means the process died between the
two fallback renames (rename the new tree in, then finish).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._store import fsync_dir
from .exceptions import RestoreImpossible

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100

STEP_HOOK: Callable[[str], None] | None = None
"""Called at each named step of a restore; crash tests use it to stop a restore exactly there."""


def checkpoint(step: str) -> None:
    if STEP_HOOK is not None:
        STEP_HOOK(step)


# -- swapping -----------------------------------------------------------------------------


@dataclass(kw_only=True)
class Journal:
    phase: Literal["building", "swapping"]
    snapshot_id: str
    workspace: str
    new_tree: str
    aside: str
    carry: list[str] = field(default_factory=list[str])
    old_ino: int = 0
    new_ino: int = 0


def write_journal(path: Path, journal: Journal) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(asdict(journal)).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    fsync_dir(path.parent)


def read_journal(path: Path) -> Journal | None:
    try:
        raw: dict[str, Any] = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        # Written by rename only, so a torn journal cannot be ours; leave it for a human.
        raise RestoreImpossible(f"restore journal {path} is unreadable; inspect and remove it") from None
    return Journal(**raw)


def plan(workspace: Path, snapshot_id: str, carry: Sequence[str]) -> Journal:
    token = secrets.token_hex(4)
    return Journal(
        phase="building",
        snapshot_id=snapshot_id,
        workspace=str(workspace),
        new_tree=str(workspace.with_name(f".{workspace.name}.swarm-restore-{token}")),
        aside=str(workspace.with_name(f".{workspace.name}.swarm-old-{token}")),
        carry=list(carry),
    )


def _ino(path: str) -> int | None:
    try:
        return os.lstat(path).st_ino
    except FileNotFoundError:
        return None


def rename_exchange(a: str, b: str) -> bool:
    """Swap two paths atomically; False where the kernel or filesystem cannot."""
    func = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if func is None:
        return False
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), a)


def swap(
    journal_path: Path, journal: Journal, *, exchange: bool = True, after: Callable[[], object] | None = None
) -> list[str]:
    """Put the built tree in place of the workspace, carry skipped paths over, delete the old tree.

    `after` runs right after the swap. Returns the carried paths that had nowhere to go in the
    restored tree (deleted with the old one).
    """
    workspace, new_tree = journal.workspace, journal.new_tree
    journal.old_ino, journal.new_ino = _ino(workspace) or 0, _ino(new_tree) or 0
    journal.phase = "swapping"
    write_journal(journal_path, journal)
    checkpoint("swap")
    try:
        swapped = exchange and rename_exchange(workspace, new_tree)
        if not swapped:
            os.rename(workspace, journal.aside)
            checkpoint("between_renames")
            os.rename(new_tree, workspace)
    except OSError as exc:
        if exc.errno in (errno.EBUSY, errno.EXDEV):
            raise RestoreImpossible(f"cannot swap {workspace} (a mount point?): {exc.strerror}") from None
        raise
    fsync_dir(Path(workspace).parent)
    checkpoint("swapped")
    if after is not None:
        after()
    return _finish(journal_path, journal)


def _finish(journal_path: Path, journal: Journal) -> list[str]:
    old = journal.new_tree if _ino(journal.new_tree) == journal.old_ino else journal.aside
    dropped = carry_over(Path(old), Path(journal.workspace), journal.carry) if _ino(old) == journal.old_ino else []
    checkpoint("carried")
    _remove_ours(old, journal)
    journal_path.unlink(missing_ok=True)
    return dropped


def reinstate(journal_path: Path) -> bool:
    """Put the new tree at the workspace path if the restore was killed between the two fallback renames.

    The journal stays: `recover` then finishes the restore. Returns whether anything was moved.
    """
    journal = read_journal(journal_path)
    if journal is None or journal.phase != "swapping" or not journal.new_ino:
        return False
    if _ino(journal.workspace) is not None or _ino(journal.new_tree) != journal.new_ino:
        return False
    os.rename(journal.new_tree, journal.workspace)
    fsync_dir(Path(journal.workspace).parent)
    return True


def recover(journal_path: Path) -> tuple[Literal["rolled_back", "completed"], Journal] | None:
    """Finish or undo a restore that was killed; None when none was in progress."""
    reinstate(journal_path)
    journal = read_journal(journal_path)
    if journal is None:
        return None
    at_workspace = _ino(journal.workspace)
    if journal.phase == "swapping" and at_workspace == journal.new_ino:
        _finish(journal_path, journal)
        return "completed", journal
    _remove_ours(journal.new_tree, journal)
    journal_path.unlink(missing_ok=True)
    return "rolled_back", journal


def abandon(journal_path: Path, journal: Journal) -> None:
    """Throw away a half-built tree (the workspace was never touched)."""
    _remove_ours(journal.new_tree, journal)
    journal_path.unlink(missing_ok=True)


def _remove_ours(path: str, journal: Journal) -> None:
    """Delete a sibling tree we made, and only that: never the workspace itself."""
    ino = _ino(path)
    if ino is None or path == journal.workspace or ino == _ino(journal.workspace):
        return
    if not Path(path).name.startswith(f".{Path(journal.workspace).name}.swarm-"):
        return
    remove_tree(Path(path))


def remove_tree(path: Path) -> None:
    def onerror(func: Callable[..., Any], failed: str, _exc: object) -> None:
        # A restored read-only directory stops its children being deleted (when not root): open it up.
        for target in (os.path.dirname(failed), failed):
            with contextlib.suppress(OSError):
                os.chmod(target, 0o700)
        with contextlib.suppress(FileNotFoundError):
            func(failed)

    shutil.rmtree(path, onerror=onerror)


def carry_over(old_root: Path, new_root: Path, paths: Sequence[str]) -> list[str]:
    """Move paths the snapshot leaves out (excluded, special) from the old tree into the restored one."""
    dropped: list[str] = []
    for rel in paths:
        parts = rel.split("/")
        try:
            src = _open_walk(old_root, parts[:-1])
        except OSError:
            continue  # already carried by an earlier, interrupted attempt
        try:
            try:
                os.lstat(parts[-1], dir_fd=src)
            except FileNotFoundError:
                continue
            try:
                dst = _open_walk(new_root, parts[:-1])
            except OSError:
                dropped.append(rel)
                continue
            try:
                os.lstat(parts[-1], dir_fd=dst)
                dropped.append(rel)
            except FileNotFoundError:
                os.rename(parts[-1], parts[-1], src_dir_fd=src, dst_dir_fd=dst)
            finally:
                os.close(dst)
        finally:
            os.close(src)
    return dropped


def _open_walk(root: Path, parts: Sequence[str]) -> int:
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd
