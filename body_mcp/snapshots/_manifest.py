"""The snapshot manifest: what a workspace held, self-checking.

A manifest is JSON: `id`, `created_at`, `workspace`, `entries` (`path`, `type` file|dir|symlink,
`mode`, `sha256`, `size`, `target`, and for files a `stat` cache `[size, mtime_ns, ino,
ctime_ns]` that lets the next snapshot skip rereading an unchanged file), `skipped` (special
files, excluded paths), `extras` (the state database and the config file, stored as chunks)
and `manifest_sha256`, the sha256 of the canonical JSON of everything else, so damage to the
manifest itself is detected.

Names are kept as Python reads them from the filesystem: bytes that are not UTF-8 become lone
surrogates (`os.fsdecode`'s surrogateescape), which `os.fsencode` turns back into the same bytes.
Format 2 writes the canonical JSON ASCII-only, so such a surrogate is written as its `\\udcff`
escape and read back unchanged; format 1 (non-ASCII written as UTF-8, so it could not hold them)
is still read, its hash checked against its own canonical form.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Literal, cast

from .exceptions import SnapshotDamaged

EntryType = Literal["file", "dir", "symlink"]
SkipReason = Literal["excluded", "special", "unreadable"]
StatKey = tuple[int, int, int, int]
_FORMAT = 2
_FORMAT_UTF8 = 1
"""Written before names that are not UTF-8 could be kept: readable, never written."""


@dataclass(kw_only=True, frozen=True, slots=True)
class Entry:
    path: str
    type: EntryType
    mode: int | None
    sha256: str | None = None
    size: int = 0
    target: str | None = None
    stat: StatKey | None = None
    """(size, mtime_ns, ino, ctime_ns) when read; None when the file was too fresh to trust it."""

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("/"))


@dataclass(kw_only=True, frozen=True, slots=True)
class Skipped:
    path: str
    reason: SkipReason


@dataclass(kw_only=True, frozen=True, slots=True)
class Extra:
    """A file kept beside the workspace tree (`state.db`, `config`), as a list of chunks."""

    name: str
    source: str
    size: int
    mode: int
    chunks: tuple[tuple[str, int], ...]
    stat: tuple[int, ...] | None = None


@dataclass(kw_only=True, frozen=True)
class Manifest:
    id: str
    created_at: str
    workspace: str
    reason: str
    root_mode: int
    exclude: tuple[str, ...]
    entries: tuple[Entry, ...]
    skipped: tuple[Skipped, ...] = ()
    extras: tuple[Extra, ...] = ()

    @property
    def files(self) -> int:
        return sum(1 for e in self.entries if e.type == "file")

    @property
    def bytes(self) -> int:
        return sum(e.size for e in self.entries)

    def extra(self, name: str) -> Extra | None:
        return next((x for x in self.extras if x.name == name), None)


def _canonical(value: object, *, version: int = _FORMAT) -> bytes:
    ascii_only = version != _FORMAT_UTF8
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_only).encode()


def manifest_to_json(manifest: Manifest) -> bytes:
    body: dict[str, Any] = {
        "format": _FORMAT,
        "id": manifest.id,
        "created_at": manifest.created_at,
        "workspace": manifest.workspace,
        "reason": manifest.reason,
        "root_mode": manifest.root_mode,
        "exclude": list(manifest.exclude),
        "entries": [
            {"path": e.path, "type": e.type, "mode": e.mode, "sha256": e.sha256, "size": e.size, "target": e.target}
            | ({"stat": list(e.stat)} if e.stat is not None else {})
            for e in manifest.entries
        ],
        "skipped": [{"path": s.path, "reason": s.reason} for s in manifest.skipped],
        "extras": [
            {"name": x.name, "source": x.source, "size": x.size, "mode": x.mode, "chunks": [list(c) for c in x.chunks]}
            | ({"stat": list(x.stat)} if x.stat is not None else {})
            for x in manifest.extras
        ],
    }
    body["manifest_sha256"] = hashlib.sha256(_canonical(body)).hexdigest()
    return _canonical(body)


def manifest_from_json(data: bytes, *, expected_id: str) -> Manifest:
    """Parse and check a manifest; `SnapshotDamaged` for anything that does not add up."""
    damaged = SnapshotDamaged(f"snapshot {expected_id}: its manifest is damaged (hash mismatch or unreadable)")
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise damaged from None
    if not isinstance(raw, dict):
        raise damaged
    body = cast(dict[str, Any], raw)
    claimed = body.pop("manifest_sha256", None)
    version = body.get("format")
    if (
        version not in (_FORMAT, _FORMAT_UTF8)
        or claimed != hashlib.sha256(_canonical(body, version=version)).hexdigest()
    ):
        raise damaged
    try:
        if body["id"] != expected_id:
            raise damaged
        manifest = Manifest(
            id=str(body["id"]),
            created_at=str(body["created_at"]),
            workspace=str(body["workspace"]),
            reason=str(body["reason"]),
            root_mode=int(body["root_mode"]),
            exclude=tuple(str(p) for p in body["exclude"]),
            entries=tuple(_entry(e) for e in body["entries"]),
            skipped=tuple(Skipped(path=str(s["path"]), reason=s["reason"]) for s in body["skipped"]),
            extras=tuple(_extra(x) for x in body["extras"]),
        )
    except (KeyError, TypeError, ValueError):
        raise damaged from None
    _check_paths(manifest, damaged)
    return manifest


def _entry(raw: dict[str, Any]) -> Entry:
    kind = raw["type"]
    if kind not in ("file", "dir", "symlink"):
        raise ValueError(kind)
    stat = raw.get("stat")
    sha = raw["sha256"]
    if kind == "file" and not (isinstance(sha, str) and len(sha) == 64):
        raise ValueError("file without sha256")
    if kind == "symlink" and not isinstance(raw["target"], str):
        raise ValueError("symlink without target")
    return Entry(
        path=str(raw["path"]),
        type=kind,
        mode=None if raw["mode"] is None else int(raw["mode"]),
        sha256=sha,
        size=int(raw["size"]),
        target=raw["target"],
        stat=(int(stat[0]), int(stat[1]), int(stat[2]), int(stat[3])) if stat is not None else None,
    )


def _extra(raw: dict[str, Any]) -> Extra:
    stat = raw.get("stat")
    return Extra(
        name=str(raw["name"]),
        source=str(raw["source"]),
        size=int(raw["size"]),
        mode=int(raw["mode"]),
        chunks=tuple((str(sha), int(size)) for sha, size in raw["chunks"]),
        stat=tuple(int(v) for v in stat) if stat is not None else None,
    )


def _encodable(name: str) -> bool:
    """A name `os.fsencode` can turn into bytes (a surrogate outside the escape range cannot be)."""
    try:
        os.fsencode(name)
    except UnicodeEncodeError:
        return False
    return True


def _check_paths(manifest: Manifest, damaged: SnapshotDamaged) -> None:
    """Every path relative and normalised, unique, under a directory entry: a restore cannot escape."""
    dirs: set[tuple[str, ...]] = {()}
    seen: set[str] = set()
    for entry in sorted(manifest.entries, key=lambda e: e.parts):
        parts = entry.parts
        if entry.path in seen or any(p in ("", ".", "..") or "\x00" in p for p in parts):
            raise damaged
        if not _encodable(entry.path) or (entry.target is not None and not _encodable(entry.target)):
            raise damaged
        if parts[:-1] not in dirs:
            raise damaged
        seen.add(entry.path)
        if entry.type == "dir":
            dirs.add(parts)
    for extra in manifest.extras:
        if sum(size for _, size in extra.chunks) != extra.size:
            raise damaged
