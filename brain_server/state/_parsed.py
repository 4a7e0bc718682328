"""Rows parsed by earlier scans, kept with the text they were parsed from (`Parsed`).

The dashboard's polls scan the same tasks, usage records and decisions every few seconds, and parsing them (pydantic
validation of every record and history event) was most of what a poll cost. A scan still reads every row, but a row
whose stored text is what it was last time gives back the model parsed then (models are immutable); a row that
changed (a task's new event, a privacy rewrite of a record) is parsed again. Exact by construction: the same text
parses to the same model. Used on the scanner's thread only (`SqliteDatabase._scan`), so it takes no lock.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
S = TypeVar("S")
V = TypeVar("V")


class Parsed(Generic[K, S, V]):
    """`parse(source)` of each row by its key, reused while the row's `source` (its stored text) is unchanged."""

    def __init__(self, parse: Callable[[S], V]) -> None:
        self._parse = parse
        self._rows: dict[K, tuple[S, V, int]] = {}
        self._scans = 0
        """Scans ended (`end_scan`): each row remembers the last one that used it."""

    def get(self, key: K, source: S) -> V:
        kept = self._rows.get(key)
        value = kept[1] if kept is not None and kept[0] == source else self._parse(source)
        self._rows[key] = (source, value, self._scans)
        return value

    def keep_only(self, keys: set[K]) -> None:
        """Forget rows a scan of the whole table did not see (deleted since): memory follows the table."""
        if len(keys) < len(self._rows):
            self._rows = {k: v for k, v in self._rows.items() if k in keys}

    def end_scan(self, *, keep: int) -> None:
        """Forget rows none of the last `keep` scans used (for scans of a window: memory follows what they read)."""
        self._scans += 1
        oldest = self._scans - keep
        if any(used < oldest for _source, _value, used in self._rows.values()):
            self._rows = {k: v for k, v in self._rows.items() if v[2] >= oldest}

    def clear(self) -> None:
        """Forget every row (what a privacy rewrite replaced is then kept nowhere in this process)."""
        self._rows = {}
