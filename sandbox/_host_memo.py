# pyright: strict
"""Facts about the host's toolchains, remembered while the directories they were read from stay unchanged.

Every command plans which host paths its sandbox exposes (`_toolchain.py`) and which toolchains the machine
offers (`_detect.py`): hundreds of `lstat`s and `realpath`s, about 15 ms a command on a loaded machine, for
an answer that changes only when someone installs or removes a toolchain. A fact is kept with a stamp of the
directories it depends on (inode, mtime and ctime of each, and of each one's parent: creating, removing,
renaming or relinking an entry changes its parent's mtime), and computed again as soon as the stamp differs.
Nothing of a workspace is remembered here: what a workspace declares is read for each command.

`recording()` collects the stamps of every fact a computation used, so that its own result can be remembered
on top (`_plan_memo.py`): valid while each of them would still be.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Generator, Hashable, Iterable
from typing import TypeVar

T = TypeVar("T")

_MAX_ENTRIES = 64

Stamp = tuple[tuple[int, int, int] | None, ...]
Stamps = dict[str, tuple[int, int, int] | None]
"""A path's (inode, mtime, ctime) by path."""


def stamp(paths: Iterable[str | os.PathLike[str]]) -> Stamp:
    """(inode, mtime, ctime) of each path and of its parent directory, None where there is none."""
    return tuple(stamps(paths).values())


def stamps(paths: Iterable[str | os.PathLike[str]]) -> Stamps:
    """`stamp`, by path."""
    seen: dict[str, None] = {}
    for path in paths:
        text = os.fspath(path)
        seen[text] = None
        seen[os.path.dirname(text) or "/"] = None
    return _lstat_each(seen)


def unchanged(recorded: Stamps) -> bool:
    """Whether every path of `recorded` (parents included, as `stamps` gave them) is as it was stamped."""
    return _lstat_each(recorded) == recorded


def _lstat_each(paths: Iterable[str]) -> Stamps:
    out: Stamps = {}
    for text in paths:
        try:
            st = os.lstat(text)
        except OSError:
            out[text] = None
            continue
        out[text] = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    return out


class HostMemo:
    """Remembered results by key, each valid while its stamp is unchanged (thread-safe)."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[Stamp, object]] = {}
        self._lock = threading.Lock()
        self._recorders = threading.local()

    def get(self, key: Hashable, watched: Iterable[str | os.PathLike[str]], compute: Callable[[], T]) -> T:
        """The remembered result for `key` if the `watched` paths are as they were, else `compute()`'s (which
        is remembered only when it returns: an error is raised again next time)."""
        by_path = stamps(watched)
        for recorder in self._active():
            for path, seen in by_path.items():
                recorder.setdefault(path, seen)  # (the first seen: a change since makes it differ)
        now = tuple(by_path.values())
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0] == now:
            return entry[1]  # type: ignore[return-value]
        value = compute()
        with self._lock:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (now, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    @contextlib.contextmanager
    def recording(self) -> Generator[Stamps]:
        """The stamps of the paths every `get` of this thread watched meanwhile (stamped before its fact was
        computed or found), filled as they are used."""
        recorder: Stamps = {}
        active = self._active()
        active.append(recorder)
        try:
            yield recorder
        finally:
            active[:] = [other for other in active if other is not recorder]

    def _active(self) -> list[Stamps]:
        active: list[Stamps] | None = getattr(self._recorders, "active", None)
        if active is None:
            active = self._recorders.active = []
        return active


HOST_FACTS = HostMemo()
