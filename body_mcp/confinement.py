"""Path confinement: every path an agent names is resolved inside the workspace or refused.

Resolution is `realpath` done by hand, inside the workspace: components are walked one at
a time, `..` pops (and refuses to pop past the root), and each symlink's target is spliced
in and walked too, so a link (file or directory) leading outside is refused wherever it
sits. The result is a canonical relative path with no symlinks in it.

Resolution alone would leave a window (a directory swapped for a symlink between check and
use). So operations never use the path string: they walk from a descriptor of the root with
`openat(..., O_NOFOLLOW | O_DIRECTORY)` one component at a time and act relative to the
parent's descriptor. A symlink swapped in makes the open fail; it is never followed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shared_protocol import RefusalCode
from shared_protocol.refusals import Rule

from .exceptions import InvalidPath, PathOutsideWorkspace, ToolRefused
from .names import named, shown

_MAX_SYMLINKS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class WorkspacePath:
    """A canonical path inside the workspace: no `.`, `..` or symlinks; `()` is the root."""

    parts: tuple[str, ...]
    lexical: tuple[str, ...]
    """The path as the agent wrote it, normalised but with symlinks unresolved (policy checks both)."""

    @property
    def rel(self) -> str:
        return "/".join(self.parts) or "."

    @property
    def shown(self) -> str:
        """`rel` as a result shows it (`names.shown`)."""
        return shown(self.rel)

    @property
    def name(self) -> str:
        return self.parts[-1] if self.parts else ""

    @property
    def parent(self) -> tuple[str, ...]:
        return self.parts[:-1]


class Workspace:
    """A workspace root held open by descriptor; all file access goes through it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._root_parts = self.root.parts
        self._root_names = list(self._root_parts[1:])
        self.root_fd = os.open(self.root, _DIR_FLAGS)
        held = os.fstat(self.root_fd)
        self._identity = (held.st_dev, held.st_ino)
        self._root_str = str(self.root)

    def close(self) -> None:
        os.close(self.root_fd)

    def reopen(self) -> None:
        """Hold the directory the root path names now (after a snapshot restore swapped it), in place."""
        fd = os.open(self.root, _DIR_FLAGS)
        held = os.fstat(fd)
        old, self.root_fd, self._identity = self.root_fd, fd, (held.st_dev, held.st_ino)
        os.close(old)

    def replaced(self) -> bool:
        """Whether the root path no longer names the directory held open (a snapshot restore swapped it)."""
        try:
            st = os.stat(self._root_str)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._identity

    # -- resolution --------------------------------------------------------------------

    def _relative_parts(self, raw: str) -> list[str]:
        """The components of `raw` (as given; its escapes read back), relative to the root."""
        path = named(raw)
        if "\x00" in path:
            raise InvalidPath("path contains a NUL byte")
        if path.startswith("~"):
            raise InvalidPath(f"'{raw}': '~' is not expanded; give a path relative to the workspace")
        if path.strip() in ("", "."):
            return []
        # Plain string splitting (hot path): empty and "." components are skipped by the callers.
        parts = [part for part in path.split("/") if part and part != "."]
        if path.startswith("/"):
            # Component-wise comparison: /work/ws-evil is not inside /work/ws.
            if parts[: len(self._root_names)] != self._root_names:
                raise PathOutsideWorkspace(f"'{raw}' is outside the workspace {self.root}")
            return parts[len(self._root_names) :]
        return parts

    def resolve(self, raw: str, *, follow_last: bool = True) -> WorkspacePath:
        """Canonicalise `raw` inside the workspace, refusing anything that leads out.

        `raw` is read as results show names (`names.named`: `a\\xff` is `a` and the byte ff), before any check.
        `follow_last=False` leaves a final symlink unresolved (to move or delete the link itself).
        """
        pending = self._relative_parts(raw)
        lexical = _lexical(pending, raw)
        stack: list[str] = []
        links = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not stack:
                    raise PathOutsideWorkspace(f"'{raw}' leads outside the workspace through '..'")
                stack.pop()
                continue
            candidate = os.path.join(self.root, *stack, part)
            try:
                st = os.lstat(candidate)
            except (FileNotFoundError, NotADirectoryError):
                stack.append(part)
                continue
            if stat.S_ISLNK(st.st_mode) and (pending or follow_last):
                links += 1
                if links > _MAX_SYMLINKS:
                    raise InvalidPath(f"'{raw}': too many levels of symbolic links")
                target = os.readlink(candidate)
                link = shown("/".join([*stack, part]))
                if target.startswith("/"):
                    target_parts = PurePosixPath(target).parts
                    if target_parts[: len(self._root_parts)] != self._root_parts:
                        raise PathOutsideWorkspace(
                            f"'{raw}': symlink '{link}' leads outside the workspace (to {shown(target)})"
                        )
                    stack = []
                    pending = list(target_parts[len(self._root_parts) :]) + pending
                else:
                    pending = [p for p in target.split("/") if p] + pending
                    # A relative target that climbs past the root is caught by the '..' rule above,
                    # but name the link rather than the path the agent gave.
                    depth = len(stack)
                    for p in target.split("/"):
                        if p == "..":
                            depth -= 1
                            if depth < 0:
                                raise PathOutsideWorkspace(
                                    f"'{raw}': symlink '{link}' leads outside the workspace (to {shown(target)})"
                                )
                        elif p not in ("", "."):
                            depth += 1
                continue
            stack.append(part)
        return WorkspacePath(parts=tuple(stack), lexical=lexical)

    # -- descriptor walking ------------------------------------------------------------

    def open_dir(self, parts: tuple[str, ...], *, create: bool = False) -> Descriptor:
        """`with ws.open_dir(parts) as fd`: a descriptor of the directory `parts`, closed on leaving."""
        return Descriptor(self.open_dir_fd(parts, create=create))

    def open_dir_fd(self, parts: tuple[str, ...], *, create: bool = False) -> int:
        """A descriptor of the directory `parts` (the caller closes it), walked without following any symlink."""
        fd = os.dup(self.root_fd)
        try:
            for index, part in enumerate(parts):
                try:
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise _not_found(parts[: index + 1]) from None
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o777, dir_fd=fd)
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise ToolRefused(
                            f"'{shown('/'.join(parts[: index + 1]))}' is not a directory (or changed into a symlink)",
                            code=RefusalCode.NOT_A_DIRECTORY,
                            rule=Rule.CONFINEMENT,
                        ) from None
                    raise
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def is_dir(self, parts: tuple[str, ...]) -> bool:
        """Whether `parts` is an existing directory reached without following symlinks."""
        try:
            with self.open_dir(parts):
                return True
        except ToolRefused:
            return False

    def lstat(self, path: WorkspacePath) -> os.stat_result | None:
        """`lstat` of the entry through its parent's descriptor; None if absent."""
        if not path.parts:
            return os.fstat(self.root_fd)
        try:
            with self.open_dir(path.parent) as parent:
                return os.stat(path.name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except ToolRefused as exc:
            if exc.code in (RefusalCode.NOT_FOUND, RefusalCode.NOT_A_DIRECTORY):
                return None
            raise


class Descriptor:
    """Closes a descriptor when the `with` block ends (a class: cheaper than a generator on the hot path)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _lexical(parts: list[str], raw: str) -> tuple[str, ...]:
    out: list[str] = []
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                raise PathOutsideWorkspace(f"'{raw}' leads outside the workspace through '..'")
            out.pop()
        else:
            out.append(part)
    return tuple(out)


def _not_found(parts: tuple[str, ...]) -> ToolRefused:
    return ToolRefused(f"'{shown('/'.join(parts))}' does not exist", code=RefusalCode.NOT_FOUND, rule=Rule.FS)
