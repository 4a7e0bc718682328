# pyright: strict
"""Facts about the host's toolchains, remembered while the directories they were read from stay unchanged.

Every command plans which host paths its sandbox exposes (`_toolchain.py`) and which toolchains the machine
offers (`_detect.py`): hundreds of `lstat`s and `realpath`s, about 15 ms a command on a loaded machine, for
an answer that changes only when someone installs or removes a toolchain. A fact is kept with a stamp of the
directories it depends on (inode, mtime and ctime of each, and of each one's parent: creating, removing,
renaming or relinking an entry changes its parent's mtime), and computed again as soon as the stamp differs.
Nothing of a workspace is remembered here: what a workspace declares is read for each command.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

T = TypeVar("T")

_MAX_ENTRIES = 64

Stamp = tuple[tuple[int, int, int] | None, ...]


def stamp(paths: Iterable[str | os.PathLike[str]]) -> Stamp:
    """(inode, mtime, ctime) of each path and of its parent directory, None where there is none."""
    seen: dict[str, None] = {}
    for path in paths:
        text = os.fspath(path)
        seen[text] = None
        seen[os.path.dirname(text) or "/"] = None
    out: list[tuple[int, int, int] | None] = []
    for text in seen:
        try:
            st = os.lstat(text)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_ino, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


class HostMemo:
    """Remembered results by key, each valid while its stamp is unchanged (thread-safe)."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[Stamp, object]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, watched: Iterable[str | os.PathLike[str]], compute: Callable[[], T]) -> T:
        """The remembered result for `key` if the `watched` paths are as they were, else `compute()`'s (which
        is remembered only when it returns: an error is raised again next time)."""
        now = stamp(watched)
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


HOST_FACTS = HostMemo()
