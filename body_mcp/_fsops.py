"""Primitive file operations through workspace descriptors (no path strings, no symlink following).

Used by the file tools, by undo and by applying a command's staged changes, so all of them
change the workspace the same way: writes go to a temporary file in the same directory and
are renamed over the target, so a reader never sees half a file and a crash never leaves one;
and no mode written here keeps setuid, setgid or sticky bits (a setuid-root copy of a binary
in the workspace would be a privilege escalation on the host), whoever asked for them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from typing import Literal

from shared_protocol import RefusalCode
from shared_protocol.refusals import Rule

from .confinement import Workspace
from .exceptions import SpecialFile, ToolRefused

EntryType = Literal["absent", "file", "dir", "symlink", "special"]


@dataclass(frozen=True, slots=True)
class EntryState:
    """What is at a path: enough to compare (conflicts) and to recreate (undo)."""

    type: EntryType
    sha256: str | None = None
    mode: int | None = None
    target: str | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"type": self.type}
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        if self.mode is not None:
            out["mode"] = self.mode
        if self.target is not None:
            out["target"] = self.target
        return out

    @staticmethod
    def from_json(data: dict[str, object]) -> EntryState:
        mode = data.get("mode")
        return EntryState(
            type=data["type"],  # type: ignore[arg-type]
            sha256=str(data["sha256"]) if "sha256" in data else None,
            mode=int(mode) if isinstance(mode, int) else None,
            target=str(data["target"]) if "target" in data else None,
        )


ABSENT = EntryState(type="absent")

SPECIAL_MODE_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX


def safe_mode(mode: int) -> tuple[int, int]:
    """The permission bits of `mode` that may be written, and the setuid, setgid and sticky bits removed."""
    perm = stat.S_IMODE(mode)
    return perm & ~SPECIAL_MODE_BITS, perm & SPECIAL_MODE_BITS


def entry_type(mode: int) -> EntryType:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "special"


def read_entry(
    ws: Workspace, parts: tuple[str, ...], *, max_bytes: int | None = None
) -> tuple[EntryState, bytes | None]:
    """The state at `parts` and, for a regular file, its content."""
    if not parts:
        return EntryState(type="dir", mode=stat.S_IMODE(os.fstat(ws.root_fd).st_mode)), None
    try:
        with ws.open_dir(parts[:-1]) as parent:
            return entry_at(parent, parts, max_bytes=max_bytes)
    except ToolRefused as exc:
        if exc.code in (RefusalCode.NOT_FOUND, RefusalCode.NOT_A_DIRECTORY):
            return ABSENT, None
        raise


def entry_at(parent: int, parts: tuple[str, ...], *, max_bytes: int | None = None) -> tuple[EntryState, bytes | None]:
    """`read_entry` of `parts` through a descriptor of its parent directory."""
    name = parts[-1]
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return ABSENT, None
    kind = entry_type(st.st_mode)
    perm = stat.S_IMODE(st.st_mode)
    if kind == "symlink":
        return EntryState(type="symlink", target=os.readlink(name, dir_fd=parent)), None
    if kind != "file":
        return EntryState(type=kind, mode=perm), None
    if max_bytes is not None and st.st_size > max_bytes:
        raise ToolRefused(
            f"'{'/'.join(parts)}' is {st.st_size} bytes, over the {max_bytes}-byte cap",
            code=RefusalCode.TOO_LARGE,
            rule=Rule.MAX_READ_BYTES,
        )
    data = read_file_at(parent, name, size_hint=st.st_size)
    return EntryState(type="file", sha256=hashlib.sha256(data).hexdigest(), mode=perm), data


def read_file_at(parent: int, name: str, *, size_hint: int = 0) -> bytes:
    # O_NONBLOCK: opening a FIFO swapped in after the check must not hang the body.
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=parent)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SpecialFile(f"'{name}' is not a regular file")
        # One read of the size seen (plus one byte, so growth shows), then on to the end if it did grow. A first
        # read that gave the whole size the descriptor has, and less than asked, was at the end: no second read
        # to be told so (a short read that is not the whole file, as FUSE may give, reads on).
        size = size_hint + 1 if size_hint else 1 << 20
        chunk = os.read(fd, size)
        if len(chunk) < size and len(chunk) == st.st_size:
            return chunk
        chunks = [chunk]
        while chunk:
            chunk = os.read(fd, 1 << 20)
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_atomic(ws: Workspace, parts: tuple[str, ...], data: bytes, *, mode: int | None = None) -> int:
    """Replace (or create) the file at `parts` with `data`, atomically; `mode` defaults to the old file's.

    Returns the setuid, setgid and sticky bits that were asked for (or kept from the old file) and not written.
    """
    with ws.open_dir(parts[:-1], create=True) as parent:
        name = parts[-1]
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                raise ToolRefused(f"'{'/'.join(parts)}' is a directory", code=RefusalCode.NOT_A_FILE, rule=Rule.FS)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                raise SpecialFile(f"'{'/'.join(parts)}' is a device, FIFO or socket")
            perm = stat.S_IMODE(st.st_mode) if mode is None and stat.S_ISREG(st.st_mode) else mode
        except FileNotFoundError:
            perm = mode
        return write_at(parent, name, data, mode=perm)


def write_at(parent: int, name: str, data: bytes, *, mode: int | None) -> int:
    """Write `data` to a temporary file beside `name` and rename it over `name` (the caller checked `name`).

    Returns the setuid, setgid and sticky bits of `mode` that were not written.
    """
    perm, stripped = safe_mode(mode) if mode is not None else (None, 0)
    tmp = f".{name[:100]}.swarm-{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=parent)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if perm is not None:
                os.fchmod(fd, perm)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=parent)
        raise
    return stripped


def remove_entry(ws: Workspace, parts: tuple[str, ...]) -> None:
    """Remove a file, symlink or empty directory."""
    with ws.open_dir(parts[:-1]) as parent:
        try:
            st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            try:
                os.rmdir(parts[-1], dir_fd=parent)
            except OSError as exc:
                if exc.errno == errno.ENOTEMPTY:
                    raise ToolRefused(
                        f"directory '{'/'.join(parts)}' is not empty",
                        code=RefusalCode.DIRECTORY_NOT_EMPTY,
                        rule=Rule.FS,
                    ) from None
                raise
        else:
            os.unlink(parts[-1], dir_fd=parent)


def make_dir(ws: Workspace, parts: tuple[str, ...], mode: int | None = None) -> int:
    """Create the directory (and missing parents); set `mode` without setuid, setgid or sticky bits.

    Returns the bits of `mode` that were not set.
    """
    with ws.open_dir(parts, create=True) as fd:
        if mode is None:
            return 0
        perm, stripped = safe_mode(mode)
        os.fchmod(fd, perm)
        return stripped


def make_symlink(ws: Workspace, parts: tuple[str, ...], target: str) -> None:
    with ws.open_dir(parts[:-1], create=True) as parent:
        os.symlink(target, parts[-1], dir_fd=parent)


def rename(ws: Workspace, source: tuple[str, ...], destination: tuple[str, ...]) -> None:
    with ws.open_dir(source[:-1]) as src_parent, ws.open_dir(destination[:-1], create=True) as dst_parent:
        try:
            os.stat(destination[-1], dir_fd=dst_parent, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            raise ToolRefused(
                f"'{'/'.join(destination)}' already exists", code=RefusalCode.ALREADY_EXISTS, rule=Rule.FS
            )
        os.rename(source[-1], destination[-1], src_dir_fd=src_parent, dst_dir_fd=dst_parent)
