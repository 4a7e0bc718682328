"""One subject key store used by two processes at once (an agent's body and its runner share theirs): two real
processes racing to open a new store and to make the same subjects' keys end with one key per subject, the same in
both; an erasure by a third process while another reads the store removes the key everywhere, with no copy left in
the file or its WAL."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from shared_protocol.privacy import (
    KEY_STORE_FILE,
    SqliteSubjectKeys,
    _keys,  # pyright: ignore[reportPrivateUsage]
)

SUBJECTS = 40

RACER = r"""
import json, sys
from pathlib import Path
from shared_protocol.privacy import SqliteSubjectKeys
path = Path(sys.argv[1])
print("ready", flush=True)
assert sys.stdin.readline() == "open\n"  # (both open it at once, the store not yet made)
keys = SqliteSubjectKeys(path)
print("opened", flush=True)
assert sys.stdin.readline() == "go\n"  # (both make the same keys at once)
made = {}
for i in range(int(sys.argv[2])):
    sid, key = keys.key_for("email", f"user{i}@example.org")
    made[f"user{i}@example.org"] = [sid, key.hex()]
print(json.dumps(made), flush=True)
"""

READER = r"""
import sys, time
from pathlib import Path
from shared_protocol.privacy import SqliteSubjectKeys
keys = SqliteSubjectKeys(Path(sys.argv[1]))
sid = keys.key_for("email", "alice@example.org")[0]
keys.key_for("email", "bob@example.org")  # (made before the erasure can come: the test checks it is kept)
print(sid, flush=True)
deadline = time.monotonic() + 30
while keys.key_by_id(sid) is not None:  # (reading all along, as a runner revealing its files does)
    keys.key_for("email", "bob@example.org")
    assert time.monotonic() < deadline, "the erasure was never seen"
print("gone", flush=True)
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_racing_to_make_the_same_subjects_keys_end_with_one_key_each(tmp_path: Path) -> None:
    path = tmp_path / KEY_STORE_FILE
    racers = [_python(RACER, str(path), str(SUBJECTS)) for _ in range(2)]
    for said, then in (("ready", "open"), ("opened", "go")):
        for racer in racers:
            assert racer.stdout is not None
            if (line := racer.stdout.readline()) != f"{said}\n":
                _, err = racer.communicate(timeout=30)
                raise AssertionError(f"a racer said {line!r}, not {said!r}: {err}")
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write(f"{then}\n")
            racer.stdin.flush()
    made: list[dict[str, list[str]]] = []
    for racer in racers:
        out, err = racer.communicate(timeout=60)
        assert racer.returncode == 0, err
        made.append(json.loads(out))
    assert made[0] == made[1]  # the same id and key for each subject, whichever process made it
    assert len({sid for sid, _key in made[0].values()}) == SUBJECTS
    keys = SqliteSubjectKeys(path)
    try:
        assert keys.find("email", "user7@example.org") == made[0]["user7@example.org"][0]
    finally:
        keys.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*) FROM subject_keys").fetchone() == (SUBJECTS,)
        assert conn.execute("SELECT count(*) FROM store_secret").fetchone() == (1,)
    finally:
        conn.close()


def test_an_erasure_while_another_process_reads_the_store_leaves_no_copy_and_is_seen_there(tmp_path: Path) -> None:
    path = tmp_path / KEY_STORE_FILE
    reader = _python(READER, str(path))
    assert reader.stdout is not None
    sid = reader.stdout.readline().strip()
    assert sid.startswith("s"), reader.stderr.read() if reader.stderr else ""
    keys = SqliteSubjectKeys(path)
    try:
        key = keys.key_by_id(sid)
        assert key is not None
        assert keys.erase("email", "alice@example.org") == sid
        assert reader.stdout.readline() == "gone\n"
        _, err = reader.communicate(timeout=30)
        assert reader.returncode == 0, err
        assert keys.find("email", "bob@example.org") is not None  # (the other subject's key is kept)
        for name in (path.name, f"{path.name}-wal"):
            file = path.with_name(name)
            assert not file.exists() or key not in file.read_bytes(), f"a copy of the erased key is left in {name}"
    finally:
        keys.close()


def test_a_key_made_by_another_process_between_the_lookup_and_the_insert_is_the_one_both_get(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the processes above run into only now and then, made to happen: the other connection makes the
    subject's key after this one looked and found none, before it inserts its own."""
    path = tmp_path / KEY_STORE_FILE
    mine, other = SqliteSubjectKeys(path), SqliteSubjectKeys(path)
    theirs: list[tuple[str, bytes]] = []
    draw = _keys.new_subject_id

    def drawn_while_the_other_makes_it() -> str:
        monkeypatch.setattr(_keys, "new_subject_id", draw)  # (once: the other draws its own id as usual)
        theirs.append(other.key_for("email", "alice@example.org"))
        return draw()

    monkeypatch.setattr(_keys, "new_subject_id", drawn_while_the_other_makes_it)
    try:
        assert mine.key_for("email", "alice@example.org") == theirs[0]
        assert mine.find("email", "alice@example.org") == theirs[0][0]
        assert mine.erase("email", "alice@example.org") == theirs[0][0]
        assert other.key_by_id(theirs[0][0]) is None and other.find("email", "alice@example.org") is None
    finally:
        mine.close()
        other.close()
