"""The runner's own records on disk, and personal data in them.

    write_record(path, text)                      # whole or not at all: a temporary file, fsync, rename
    save_transcript(path, entries, privacy=p)     # <agent work dir>/transcripts/<task id>.jsonl, protected
    for where, text in kept_texts(workdir): ...   # `swarm privacy export`: what each record file holds
    migrate_records(workdir, p)                   # `swarm privacy migrate`: protect files written in clear

The runner writes two kinds of record under the agent's work dir (`RECORD_DIRS`): a parked task's state
(`parked/<task>.json`: the task as the brain sent it to its claimant, decrypted, the conversation, the held call)
and a task's transcript (`transcripts/<task>.jsonl`: the model's turns and their calls). Every string in them is
passed through the `Protector` of the agent's body (`shared_protocol.privacy`, over the body's own subject key
store, `$SWARM_HOME/agents/<key>/privacy.db`) before it is written, and revealed when it is read back, so `swarm
privacy erase SUBJECT --agent NAME` shreds the runner's copies with the body's: an erased subject's values read
back as `[pii:KIND:erased]`. With `[privacy] redaction` off nothing is protected (as in the body), and what was
protected before still reads back.

The task's workspaces under the work dir (`worktrees/`, `shadow/`, `tasks/`) hold the user's files and git's own,
not the runner's records: out of scope, as the user's file contents are everywhere else.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from shared_protocol.privacy import Protector

RECORD_DIRS = ("parked", "transcripts")
"""The directories of the work dir holding the runner's own records (every file in them is one)."""


def write_record(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all: a temporary file in the same directory, flushed and synced,
    renamed over `path`, the directory synced (so the rename survives a power loss too)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def protect(value: Any, privacy: Protector | None) -> Any:
    """`value` (a JSON value) with every string's personal data encrypted under its subject's key (keys included)."""
    return value if privacy is None else privacy.protect_value(value)


def reveal(value: Any, privacy: Protector | None) -> Any:
    """`value` with every token a key still opens decrypted; an erased subject's reads `[pii:KIND:erased]`."""
    return value if privacy is None else privacy.reveal_value(value)


def save_transcript(path: Path, entries: Iterable[dict[str, Any]], *, privacy: Protector | None) -> None:
    """A task's transcript, one JSON object a line, each protected."""
    write_record(path, "".join(json.dumps(protect(e, privacy), default=str) + "\n" for e in entries))


def record_files(workdir: Path) -> list[Path]:
    """Every file of the runner's records under `workdir` (a temporary file left by a crash included)."""
    found: list[Path] = []
    for name in RECORD_DIRS:
        folder = workdir / name
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink())
    return found


def kept_texts(workdir: Path) -> Iterator[tuple[str, str]]:
    """(where, text) of each record file: `where` is its path relative to the work dir. Tokens are the same in a
    file's raw text as in its parsed values (they hold no character JSON escapes), so the text is read as it is."""
    for path in record_files(workdir):
        try:
            yield path.relative_to(workdir).as_posix(), path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue  # (removed meanwhile: the task was resumed or dropped)


def migrate_records(workdir: Path, privacy: Protector) -> list[Path]:
    """`swarm privacy migrate --agent NAME`: every record file written in clear (before the runner protected them,
    or with `[privacy] redaction` off) rewritten with its personal data protected, each file on its own and whole
    (`write_record`), so a run cut short leaves each file old or new and the next run finishes; a file already
    protected is left alone. Returns the files rewritten."""
    rewritten: list[Path] = []
    for path in record_files(workdir):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # (gone meanwhile; or not text: nothing the runner wrote)
        lines = path.parent.name == "transcripts"
        new = _protected_lines(text, privacy) if lines else _protected_document(text, privacy)
        if new is not None:
            write_record(path, new)
            rewritten.append(path)
    return rewritten


def _protected_document(text: str, privacy: Protector) -> str | None:
    """A parked state as the runner now writes it, or None when nothing in it changes; a file that is not JSON (cut
    off mid-write: the runner gives such a task up) protected as text."""
    try:
        value = json.loads(text)
    except ValueError:
        new = privacy.protect(text)
        return None if new == text else new
    protected = privacy.protect_value(value)
    return None if protected == value else json.dumps(protected, default=str)


def _protected_lines(text: str, privacy: Protector) -> str | None:
    """A transcript (JSON lines) with each line's values protected, or None when nothing in it changes."""
    changed = False
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\n")
        try:
            value = json.loads(body)
        except ValueError:
            new = privacy.protect(body)
        else:
            protected = privacy.protect_value(value)
            new = body if protected == value else json.dumps(protected, default=str)
        changed = changed or new != body
        out.append(new + line[len(body) :])
    return "".join(out) if changed else None
