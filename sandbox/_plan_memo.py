# pyright: strict
"""A command's plan, remembered while nothing it was made from has changed.

Planning a command's sandbox (which host paths to expose, what to hide, the environment's `PATH`: the body's
spec and the sandbox's mounts) is milliseconds of Python path handling a command, for an answer that is the same
from one command to the next unless something it depends on changed. A plan is remembered under a key that holds
everything the caller gives it (the spec's fields, and a token for the workspace's state: the body's scan
generation, which moves with every change the workspace's watch saw), with the stamps of every host path it
read: those the toolchain facts watched (`HostMemo.recording`) and those the caller names (`watched`: inode,
mtime and ctime of each and of its parent), and of the paths whose identity only counts (`identities_of`: what
each leads to and that target's inode and type, not its mtime: a hidden `$SWARM_HOME` whose entries change with
every audit commit is the same one to hide). It is used again only when the key is equal and every stamp is
unchanged (an `lstat` a path); anything else plans afresh. A plan that raised is never remembered. Without a
workspace token (the workspace not watched) the caller does not use this at all.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ._host_memo import HOST_FACTS, Stamps, stamps, unchanged

T = TypeVar("T")

_MAX_ENTRIES = 8


Identity = tuple[str, tuple[int, int] | None]


@dataclass(kw_only=True, frozen=True)
class _Entry(Generic[T]):
    stamps: Stamps
    identities: dict[str, Identity]
    value: T


def identities(paths: Iterable[str | os.PathLike[str]]) -> dict[str, Identity]:
    """Where each path leads (symlinks resolved) and that target's (inode, type), None where there is none."""
    out: dict[str, Identity] = {}
    for path in paths:
        text = os.fspath(path)
        target = os.path.realpath(text)
        try:
            st = os.lstat(target)
        except OSError:
            out[text] = (target, None)
            continue
        out[text] = (target, (st.st_ino, st.st_mode))
    return out


class PlanMemo(Generic[T]):
    """Plans by key, each valid while the host paths it read are unchanged (thread-safe)."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, _Entry[T]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        """How many plans were used again (tests, benches)."""
        self.misses = 0

    def get(
        self,
        key: Hashable,
        compute: Callable[[], T],
        *,
        watched: Iterable[str | os.PathLike[str]] = (),
        identities_of: Iterable[str | os.PathLike[str]] = (),
    ) -> T:
        """The plan remembered for `key` if every path it read is as it was, else `compute()`'s, remembered with
        the stamps of `watched` and the identities of `identities_of` (taken before it ran) and the stamps of
        every toolchain fact it used."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and unchanged(entry.stamps) and identities(entry.identities) == entry.identities:
            with self._lock:
                self.hits += 1
            return entry.value
        seen, known = stamps(watched), identities(identities_of)
        with HOST_FACTS.recording() as used:
            value = compute()
        for path, stamp in used.items():
            seen.setdefault(path, stamp)
        with self._lock:
            self.misses += 1
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = _Entry(stamps=seen, identities=known, value=value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
