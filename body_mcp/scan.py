"""What a command's sandbox must know about the workspace: protected paths to hide, `.gitignore` rules.

The scan decides which secrets the sandbox hides, so it is never older than the command it serves. Walking a
large workspace before every command would make commands cost more as the workspace grows (a cold walk of
100k files takes a second), so the body walks it once when it starts and then keeps it current from inotify
events (`_inotify.py`): every directory is watched before it is read, and when a command arrives the events
queued so far, which include every change made before it, are drained and only the directories they name are
read again. A command that arrives before that first walk is done waits for it (`current`).

Whatever makes the events incomplete falls back to reading everything again: the kernel's queue overflowed
(the walk is redone, with fresh watches), a watch the kernel dropped (its directory is read again, with a
new watch), a directory created before its watch (read after the watch is added, so nothing falls between).
When watches cannot be had at all (no inotify, or the per-user watch limit), every scan walks the workspace
as before this existed: each directory's findings are cached under its mtime and read again when that
changed or is too recent for a coarse clock to have shown a change.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread

from . import _inotify
from ._inotify import Event, Inotify, WatchUnavailable
from .gitignore import GitIgnore, Rule, parse
from .gitindex import TrackedFiles
from .policy import PathPolicy

logger = logging.getLogger(__name__)

_WATCH_MASK = (
    _inotify.IN_CREATE
    | _inotify.IN_DELETE
    | _inotify.IN_MOVED_FROM
    | _inotify.IN_MOVED_TO
    | _inotify.IN_CLOSE_WRITE
    | _inotify.IN_DELETE_SELF
    | _inotify.IN_MOVE_SELF
    | _inotify.IN_ONLYDIR
    | _inotify.IN_DONT_FOLLOW
)
_ENTRY_CHANGED = _inotify.IN_CREATE | _inotify.IN_DELETE | _inotify.IN_MOVED_FROM | _inotify.IN_MOVED_TO
# A directory whose mtime is this recent may still change without its mtime moving (coarse clocks): the
# unwatched walk reads it again.
_RECENT_NS = 2_000_000_000
# The watch was refused for a reason that says the directory is no longer there as a directory.
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)


@dataclass(kw_only=True)
class _DirEntry:
    mtime_ns: int
    subdirs: list[str]
    denied: list[str]
    has_gitignore: bool
    gitignore_text: str = ""
    gitignore_read_ns: int | None = None
    """The mtime of the `.gitignore` whose text is held (None: read it)."""
    wd: int | None = None


@dataclass(kw_only=True)
class ScanResult:
    denied: list[str] = field(default_factory=list[str])
    """Workspace-relative paths policy denies (secrets), to hide inside the sandbox."""
    gitignore: GitIgnore = field(default_factory=lambda: GitIgnore([]))
    tracked: frozenset[str] = frozenset()
    """What git tracks (from the index): never an artifact."""
    generation: int | None = None
    """Moves with every scan that read anything (an event, a walk): equal generations mean the watch saw no change
    to the workspace in between, so what was planned from it may be used again. None: not watched (every scan
    walks), nothing may be."""


class _EventsLost(Exception):
    """The events no longer describe every change (queue overflow, the root's watch gone): walk again."""


class _WatchRefused(Exception):
    """The kernel refused a watch on a directory that exists (e.g. the per-user limit): stop watching."""


class WorkspaceScanner:
    """The workspace's denied paths and ignore rules, kept current (see the module docstring).

    `scan()` is safe from any thread (one scan at a time); `current()` is what a command awaits."""

    def __init__(self, root: Path, policy: PathPolicy, *, watch: bool = True) -> None:
        self._root = root
        self._policy = policy
        self._cache: dict[str, _DirEntry] = {}
        self._tracked = TrackedFiles(root)
        self._watch = watch
        self._inotify: Inotify | None = None
        self._wds: dict[int, str] = {}
        self._with_gitignore: set[str] = set()
        self._assembled: tuple[list[str], GitIgnore] | None = None
        self._lock = threading.Lock()
        self._async_lock = anyio.Lock()
        self.full_scans = 0
        """How many times every directory was read (the first walk, and each fallback after lost events)."""
        self.first_scan_s: float | None = None
        """How long the first walk took (the body's start-up cost of the scan)."""
        self._generation = 0

    @property
    def watching(self) -> bool:
        return self._inotify is not None

    def reset(self) -> None:
        """Forget what was scanned (the workspace directory was replaced): the next scan walks it afresh."""
        with self._lock:
            self._forget()

    def close(self) -> None:
        with self._lock:
            self._forget()
            self._watch = False

    async def current(self) -> ScanResult:
        """The scan as of now; the first call walks the workspace (later ones wait for it). Off the event loop
        when there is anything to read; on it, without a thread hop, when there is nothing (`scan_if_quiet`)."""
        async with self._async_lock:
            if (quiet := self.scan_if_quiet()) is not None:
                return quiet
            return await anyio.to_thread.run_sync(self.scan)

    def scan_if_quiet(self) -> ScanResult | None:
        """What `scan()` would return, when it would read nothing: watched, no inotify event queued (asked of the
        kernel, not read), every `.gitignore` as last read and the git index unchanged (a `stat` each); None when
        any of that does not hold, or a scan is under way: then `scan()` does the work."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            inotify, assembled = self._inotify, self._assembled
            if inotify is None or assembled is None or inotify.queued() or self._gitignores_changed():
                return None
            if (tracked := self._tracked.paths_if_read()) is None:
                return None
            denied, gitignore = assembled
            return ScanResult(denied=list(denied), gitignore=gitignore, tracked=tracked, generation=self._generation)
        finally:
            self._lock.release()

    def scan(self) -> ScanResult:
        with self._lock:
            self._generation += 1  # (whatever it reads: only a quiet scan, which reads nothing, keeps it)
            if self._watch and self._inotify is None:
                self._walk_watched()
            elif self._inotify is not None:
                try:
                    self._apply_events(self._inotify.read())
                except _EventsLost as lost:
                    logger.info("workspace scan: %s; reading the whole workspace again", lost)
                    self._walk_watched()
                except _WatchRefused as refused:
                    self._stop_watching(str(refused))
            if self._inotify is None:
                self._walk_by_mtime()
            self._refresh_gitignores()
            denied, gitignore = self._assemble()
            generation = self._generation if self._inotify is not None else None
            return ScanResult(
                denied=list(denied), gitignore=gitignore, tracked=self._tracked.paths(), generation=generation
            )

    # -- watched ------------------------------------------------------------------------------

    def _forget(self) -> None:
        self._generation += 1
        if self._inotify is not None:
            self._inotify.close()
        self._inotify = None
        self._wds.clear()
        self._cache.clear()
        self._with_gitignore.clear()
        self._assembled = None

    def _stop_watching(self, why: str) -> None:
        logger.warning("workspace scan: %s; every command now walks the workspace", why)
        self._forget()
        self._watch = False

    def _walk_watched(self) -> None:
        """Read every directory afresh, each watched before it is read."""
        started = time.perf_counter()
        self._forget()
        try:
            self._inotify = Inotify()
            self._walk_new("")
        except (WatchUnavailable, _WatchRefused) as exc:
            self._stop_watching(str(exc))
            return
        if "" not in self._cache:
            self._forget()  # no workspace directory to watch (yet): the next scan tries again
            return
        self.full_scans += 1
        if self.first_scan_s is None:
            self.first_scan_s = time.perf_counter() - started

    def _walk_new(self, top: str) -> None:
        """Watch and read `top` and everything below it (none of it in the cache)."""
        assert self._inotify is not None
        stack = [top]
        while stack:
            rel = stack.pop()
            path = self._path(rel)
            try:
                wd = self._inotify.add(path, _WATCH_MASK)
            except OSError as exc:
                if exc.errno in _GONE:
                    continue  # gone, or no longer a directory: its parent's events say so
                raise _WatchRefused(f"cannot watch {path} ({exc.strerror})") from None
            self._wds[wd] = rel
            entry = self._read(rel, path)
            if entry is None:
                self._unwatch(wd)
                continue
            entry.wd = wd
            self._put(rel, entry)
            stack.extend(self._child(rel, name) for name in entry.subdirs)
        self._assembled = None

    def _apply_events(self, events: list[Event]) -> None:
        dirty: set[str] = set()
        renewed: set[str] = set()
        for event in events:
            if event.mask & (_inotify.IN_Q_OVERFLOW | _inotify.IN_UNMOUNT):
                raise _EventsLost("the kernel's event queue overflowed (or a filesystem went away)")
            rel = self._wds.get(event.wd)
            if rel is None:
                continue  # from a watch already dropped
            if event.mask & (_inotify.IN_IGNORED | _inotify.IN_DELETE_SELF | _inotify.IN_MOVE_SELF):
                if rel == "":
                    raise _EventsLost("the workspace directory itself moved or went away")
                renewed.add(rel)  # its watch is (or will be) gone: read it again from its parent
                dirty.add(self._parent(rel))
                continue
            if event.mask & _ENTRY_CHANGED:
                dirty.add(rel)
                if event.mask & _inotify.IN_ISDIR:
                    renewed.add(self._child(rel, event.name))  # replaced or moved: never trust its old watch
            elif event.name == ".gitignore" and (entry := self._cache.get(rel)) is not None:
                entry.gitignore_read_ns = None  # rewritten in place (its mtime may not show it)
        for rel in renewed:
            self._drop(rel)
        for rel in sorted(dirty, key=lambda r: r.count("/") if r else -1):
            if rel in self._cache:
                self._reread(rel)

    def _reread(self, rel: str) -> None:
        old = self._cache[rel]
        entry = self._read(rel, self._path(rel))
        if entry is None:
            self._drop(rel)
            return
        entry.wd = old.wd
        self._put(rel, entry)
        for name in set(old.subdirs) - set(entry.subdirs):
            self._drop(self._child(rel, name))
        for name in entry.subdirs:
            if (child := self._child(rel, name)) not in self._cache:
                self._walk_new(child)

    def _drop(self, rel: str) -> None:
        """Forget `rel` and everything below it, and their watches."""
        stack = [rel]
        while stack:
            current = stack.pop()
            entry = self._cache.pop(current, None)
            self._with_gitignore.discard(current)
            if entry is None:
                continue
            if entry.wd is not None:
                self._unwatch(entry.wd)
            stack.extend(self._child(current, name) for name in entry.subdirs)
        self._assembled = None

    def _unwatch(self, wd: int) -> None:
        self._wds.pop(wd, None)
        if self._inotify is not None:
            self._inotify.remove(wd)

    # -- unwatched ----------------------------------------------------------------------------

    def _walk_by_mtime(self) -> None:
        """Stat every directory; read those whose mtime changed or is too recent to tell."""
        now_ns = time.time_ns()
        seen: set[str] = set()
        stack = [""]
        while stack:
            rel = stack.pop()
            path = self._path(rel)
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            seen.add(rel)
            cached = self._cache.get(rel)
            if cached is None or cached.mtime_ns != st.st_mtime_ns or now_ns - st.st_mtime_ns < _RECENT_NS:
                entry = self._read(rel, path)
                if entry is None:
                    continue
                self._put(rel, entry)
                cached = entry
            stack.extend(self._child(rel, name) for name in reversed(cached.subdirs))
        for gone in set(self._cache) - seen:
            del self._cache[gone]
            self._with_gitignore.discard(gone)
            self._assembled = None

    # -- shared -------------------------------------------------------------------------------

    def _put(self, rel: str, entry: _DirEntry) -> None:
        """Hold a directory just read (its `.gitignore`, if any, is read afresh by the next refresh)."""
        self._cache[rel] = entry
        if entry.has_gitignore:
            self._with_gitignore.add(rel)
        else:
            self._with_gitignore.discard(rel)
        self._assembled = None

    def _path(self, rel: str) -> str:
        return os.path.join(self._root, rel) if rel else str(self._root)

    @staticmethod
    def _child(rel: str, name: str) -> str:
        return f"{rel}/{name}" if rel else name

    @staticmethod
    def _parent(rel: str) -> str:
        return rel.rpartition("/")[0]

    def _read(self, rel: str, path: str) -> _DirEntry | None:
        """The directory's findings, or None when it is not (or no longer) a directory."""
        base = tuple(rel.split("/")) if rel else ()
        subdirs: list[str] = []
        denied: list[str] = []
        has_gitignore = False
        try:
            st = os.stat(path, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                return None
            with os.scandir(path) as it:
                for entry in it:
                    parts = (*base, entry.name)
                    is_dir = entry.is_dir(follow_symlinks=False)
                    if self._policy.classify_parts(parts)[0] == "denied":
                        denied.append("/".join(parts))
                    elif is_dir and entry.name != ".git":
                        subdirs.append(entry.name)
                    if entry.name == ".gitignore":
                        has_gitignore = True
        except (FileNotFoundError, NotADirectoryError):
            return None
        return _DirEntry(
            mtime_ns=st.st_mtime_ns, subdirs=sorted(subdirs), denied=sorted(denied), has_gitignore=has_gitignore
        )

    def _gitignores_changed(self) -> bool:
        """Whether `_refresh_gitignores` would change anything (the same checks, nothing read)."""
        for rel in self._with_gitignore:
            entry = self._cache[rel]
            try:
                st = os.stat(os.path.join(self._path(rel), ".gitignore"), follow_symlinks=False)
            except OSError:
                st = None
            if st is None or not stat.S_ISREG(st.st_mode):
                if entry.gitignore_text or entry.gitignore_read_ns is not None:
                    return True
            elif entry.gitignore_read_ns != st.st_mtime_ns:
                return True
        return False

    def _refresh_gitignores(self) -> None:
        """Read each `.gitignore` that is new, changed its mtime or was rewritten (an event said so)."""
        for rel in self._with_gitignore:
            entry = self._cache[rel]
            target = os.path.join(self._path(rel), ".gitignore")
            try:
                st = os.stat(target, follow_symlinks=False)
            except OSError:
                st = None
            if st is None or not stat.S_ISREG(st.st_mode):
                if entry.gitignore_text:
                    self._assembled = None
                entry.gitignore_read_ns, entry.gitignore_text = None, ""
                continue
            if entry.gitignore_read_ns != st.st_mtime_ns:
                try:
                    with open(target, encoding="utf-8", errors="replace") as fh:
                        entry.gitignore_text = fh.read(1024 * 1024)
                except OSError:
                    entry.gitignore_text = ""
                entry.gitignore_read_ns = st.st_mtime_ns
                self._assembled = None

    def _assemble(self) -> tuple[list[str], GitIgnore]:
        """Denied paths and ignore rules over the cached tree, parents before children (rebuilt after a change)."""
        if self._assembled is None:
            denied: list[str] = []
            rules: list[Rule] = []
            stack = [""] if "" in self._cache else []
            while stack:
                rel = stack.pop()
                entry = self._cache.get(rel)
                if entry is None:
                    continue
                if entry.gitignore_text:
                    rules.extend(parse(entry.gitignore_text, rel))
                denied.extend(entry.denied)
                stack.extend(self._child(rel, name) for name in reversed(entry.subdirs))
            self._assembled = (denied, GitIgnore(rules))
        return self._assembled
