"""Reading, diffing and writing the IDE files a plan names, keeping a backup of what was there.

A file is rewritten only when its content changes: `merge(existing) == existing` leaves it
byte for byte as it was (so a second `swarm init` writes nothing, and keeps the user's
formatting). A file that is not a JSON object is never overwritten: that is an error for a
human to fix. Before a file changes, its previous content is copied to the backup directory
(`$SWARM_HOME/ide-backups/`, outside the workspace so nothing is committed or left lying
around), and the new content replaces it atomically. A `.gitignore` gets a line only for a path
its workspace's ignore files do not already ignore.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from ..gitignore import GitIgnore, Rule, parse
from . import merge
from .configs import FileEdit, IgnoreEdit
from .exceptions import ConfigFileUnreadable
from .merge import JsonObject


def load_json_object(path: Path) -> JsonObject | None:
    """The file's JSON object; None when the file does not exist; `ConfigFileUnreadable` otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileUnreadable(f"{path}: cannot read it ({exc})") from None
    if not text.strip():
        return {}
    try:
        data: object = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigFileUnreadable(
            f"{path} is not plain JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "Swarm will not rewrite it: fix it (comments are not supported) or add Swarm's entries by hand"
        ) from None
    if not isinstance(data, dict):
        raise ConfigFileUnreadable(f"{path} holds a JSON {type(data).__name__}, not an object; fix it by hand")
    return cast(JsonObject, data)


def render_json(doc: JsonObject) -> str:
    """The text Swarm writes: two-space indented JSON and a final newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


@dataclass(kw_only=True, frozen=True)
class PlannedWrite:
    """One file's current text (None: absent) and the text it should have."""

    path: Path
    label: str
    before: str | None
    after: str | None
    """None: nothing to change."""

    @property
    def changed(self) -> bool:
        return self.after is not None

    def diff(self) -> str:
        if self.after is None:
            return ""
        before = (self.before or "").splitlines(keepends=True)
        name = str(self.path)
        return "".join(
            difflib.unified_diff(
                before,
                self.after.splitlines(keepends=True),
                fromfile=name if self.before is not None else "/dev/null",
                tofile=name,
            )
        )


def gitignored(workspace: Path, path: str) -> bool:
    """Whether the `.gitignore` files of `workspace` (at its root and on the way to `path`) ignore `path`.

    Read, not asked of git: git is not run on the host (a repository's config can make it run commands).
    """
    rules: list[Rule] = []
    parts = path.split("/")
    for depth in range(len(parts)):
        base = "/".join(parts[:depth])
        try:
            text = (workspace / base / ".gitignore").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        rules += parse(text, base)
    return GitIgnore(rules).ignored(path)


def plan_write(edit: FileEdit | IgnoreEdit) -> PlannedWrite:
    """What `edit` would do to its file now (reads it; writes nothing)."""
    if isinstance(edit, IgnoreEdit):
        return _plan_ignore(edit)
    existing = load_json_object(edit.path)
    merged = edit.merge(existing or {})
    before = edit.path.read_text(encoding="utf-8") if existing is not None else None
    after = None if existing is not None and merged == existing else render_json(merged)
    return PlannedWrite(path=edit.path, label=edit.label, before=before, after=after)


def _plan_ignore(edit: IgnoreEdit) -> PlannedWrite:
    try:
        before = edit.path.read_text(encoding="utf-8")
    except FileNotFoundError:
        before = None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileUnreadable(f"{edit.path}: cannot read it ({exc})") from None
    missing = [path for path in edit.ignored if not gitignored(edit.path.parent, path)]
    after = merge.add_ignore_lines(before, missing) if missing else None
    return PlannedWrite(path=edit.path, label=edit.label, before=before, after=after)


def backup_name(path: Path, now: datetime) -> str:
    """`20250101T120000123456Z_home__me__proj__.mcp.json`: when, and the whole path it came from."""
    return f"{now.strftime('%Y%m%dT%H%M%S%fZ')}_{path.as_posix().strip('/').replace('/', '__')}"


def apply_write(write: PlannedWrite, *, backup_dir: Path, now: datetime | None = None) -> Path | None:
    """Write the new content (backing up the old); returns the backup's path, if there was a file."""
    if write.after is None:
        return None
    path = write.path
    path.parent.mkdir(parents=True, exist_ok=True)
    backup: Path | None = None
    mode = 0o644
    if write.before is not None:
        backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        backup = backup_dir / backup_name(path, now or datetime.now(UTC))
        backup.write_text(write.before, encoding="utf-8")
        mode = path.stat().st_mode & 0o777
    tmp = path.with_name(f".{path.name}.swarm-tmp")
    tmp.write_text(write.after, encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return backup
