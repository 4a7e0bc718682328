"""Building a restored tree from a manifest, reusing the live workspace's unchanged files.

A restore usually undoes a little: most files the snapshot holds are still in the workspace,
byte for byte. Those are hard-linked into the new tree instead of copied (the snapshot taken
just before the restore says which, by sha256 and mode), so a restore costs little more than
the files that differ, and deleting the old tree afterwards frees no data blocks.

A link is used only when it is safe: the live file's `(size, mtime_ns, inode)` still equals
what that snapshot hashed and was not racily fresh, its mode equals the target's, it has no
other link (so no inode is shared by two paths of the new tree, or with anything outside),
and each live inode is used once. Anything else is copied from the store. A file written in
place between its link and the swap would show in the new tree too, so `repair` rechecks the
linked files right after the swap and rewrites any that moved from the store.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ._manifest import Entry, Manifest
from ._store import ObjectStore
from ._swap import checkpoint

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

LinkKey = tuple[int, int, int]
"""(size, mtime_ns, inode) of a linked file, as it must still be after the swap."""


@dataclass(kw_only=True)
class Reuse:
    """Files of the live workspace that may be linked into the new tree, by (sha256, mode)."""

    root: Path
    candidates: dict[tuple[str, int], list[tuple[str, LinkKey]]] = field(
        default_factory=dict[tuple[str, int], list[tuple[str, LinkKey]]]
    )
    linked: list[tuple[Entry, LinkKey]] = field(default_factory=list[tuple[Entry, LinkKey]])

    @classmethod
    def from_manifest(cls, root: Path, current: Manifest) -> Reuse:
        """`current` is the snapshot of the live workspace taken just before the restore."""
        reuse = cls(root=root)
        for entry in current.entries:
            if entry.type == "file" and entry.stat is not None and entry.sha256 is not None and entry.mode is not None:
                size, mtime_ns, ino, _ = entry.stat
                reuse.candidates.setdefault((entry.sha256, entry.mode), []).append((entry.path, (size, mtime_ns, ino)))
        return reuse


def materialize(
    manifest: Manifest,
    store: ObjectStore,
    dest: Path,
    *,
    reuse: Reuse | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> None:
    """Recreate the manifest's tree inside the empty directory `dest` (objects already verified)."""
    root_fd = os.open(dest, _DIR_FLAGS)
    live_fd = os.open(reuse.root, _DIR_FLAGS) if reuse is not None else -1
    stack: list[tuple[tuple[str, ...], int]] = [((), root_fd)]
    dirs: list[tuple[tuple[str, ...], int]] = []
    total = len(manifest.entries)
    try:
        # Depth-first order, so each directory's descriptor is opened once and reused for its children.
        for done, entry in enumerate(sorted(manifest.entries, key=lambda e: e.parts), start=1):
            parts = entry.parts
            parent = parts[:-1]
            while stack[-1][0] != parent[: len(stack[-1][0])]:
                os.close(stack.pop()[1])
            while len(stack[-1][0]) < len(parent):
                depth = len(stack[-1][0])
                stack.append((parent[: depth + 1], os.open(parent[depth], _DIR_FLAGS, dir_fd=stack[-1][1])))
            parent_fd, name = stack[-1][1], parts[-1]
            if entry.type == "dir":
                os.mkdir(name, 0o700, dir_fd=parent_fd)
                dirs.append((parts, entry.mode if entry.mode is not None else 0o755))
            elif entry.type == "symlink" and entry.target is not None:
                os.symlink(entry.target, name, dir_fd=parent_fd)
            elif entry.sha256 is not None:
                if reuse is None or not _link(reuse, live_fd, entry, parent_fd):
                    _copy(store, entry, parent_fd)
                checkpoint("build.file")
            if progress is not None and done % 500 == 0:
                progress("restoring", done, total)
        while len(stack) > 1:
            os.close(stack.pop()[1])
        # Modes last and deepest first: a read-only directory must not stop us creating its children.
        for parts, mode in reversed(dirs):
            fd = os.open("/".join(parts), _DIR_FLAGS, dir_fd=root_fd)
            try:
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        os.fchmod(root_fd, manifest.root_mode)
    finally:
        for _, fd in stack:
            os.close(fd)
        if live_fd >= 0:
            os.close(live_fd)


def _copy(store: ObjectStore, entry: Entry, parent_fd: int) -> None:
    fd = os.open(entry.parts[-1], _NEW_FILE, 0o600, dir_fd=parent_fd)
    try:
        store.copy_into(str(entry.sha256), fd)
        os.fchmod(fd, entry.mode if entry.mode is not None else 0o644)
    finally:
        os.close(fd)


def _link(reuse: Reuse, live_fd: int, entry: Entry, parent_fd: int) -> bool:
    """Hard-link an identical live file in place of a copy; False (nothing left behind) when unsafe."""
    pool = reuse.candidates.get((str(entry.sha256), entry.mode if entry.mode is not None else -1))
    if not pool:
        return False
    source, key = pool.pop()
    name = entry.parts[-1]
    try:
        os.link(source, name, src_dir_fd=live_fd, dst_dir_fd=parent_fd, follow_symlinks=False)
    except OSError:
        return False
    st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    same = (st.st_size, st.st_mtime_ns, st.st_ino) == key and stat.S_ISREG(st.st_mode)
    if same and st.st_nlink == 2 and stat.S_IMODE(st.st_mode) == entry.mode:
        reuse.linked.append((entry, key))
        return True
    os.unlink(name, dir_fd=parent_fd)
    return False


def repair(reuse: Reuse | None, store: ObjectStore, workspace: Path) -> list[str]:
    """After the swap: rewrite from the store any linked file someone wrote to in place meanwhile."""
    repaired: list[str] = []
    for entry, key in reuse.linked if reuse is not None else ():
        path = workspace / entry.path
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(path)
            if (st.st_size, st.st_mtime_ns, st.st_ino) == key:
                continue
        tmp = path.with_name(f".{path.name[:100]}.swarm-{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, _NEW_FILE, 0o600)
        try:
            store.copy_into(str(entry.sha256), fd)
            os.fchmod(fd, entry.mode if entry.mode is not None else 0o644)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        repaired.append(entry.path)
    return repaired
