"""Adversarial review of #21 (the subject key store, a real SQLite file): an erasure a reader holds up, and what its
file and WAL still hold afterwards."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shared_protocol.privacy import KEY_STORE_FILE, PrivacyConfig, Protector, SqliteSubjectKeys
from shared_protocol.privacy import _keys as keys_module  # pyright: ignore[reportPrivateUsage]
from shared_protocol.privacy.exceptions import KeyStoreUnusable


def no_sleep(_seconds: float) -> None:
    pass


def copies_of(key: bytes, path: Path) -> list[str]:
    """The store's files (database, WAL, rollback journal) holding `key`'s bytes."""
    names = (path.name, f"{path.name}-wal", f"{path.name}-journal")
    return [name for name in names if path.with_name(name).exists() and key in path.with_name(name).read_bytes()]


def test_an_erasure_a_reader_held_up_is_all_or_nothing_and_leaves_no_key_once_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was a hole (medium): `SqliteSubjectKeys.erase` deleted the row, then could not empty the WAL while another
    connection (the runner, `swarm privacy export`) held a read open, and said "run the erasure again"; but a second
    run found no row and returned at once, without a checkpoint, so the key's bytes stayed in `privacy.db-wal` until
    some later checkpoint (the last connection's close: for a long-running body, maybe never), and the rerun was
    refused as "no data held" (`UnknownSubject`), so the erasure was never audited. Reproduce: a reader in an open
    transaction, `erase` (fails), the reader ends, `erase` again, then grep the files for the key. Fixed: a failed
    erasure puts the key back (nothing erased, as it says), and `erase` empties the WAL even when it finds no row;
    the rerun finds the key, erases it (its id returned, so the caller audits it) and leaves no copy."""
    path = tmp_path / KEY_STORE_FILE
    store = SqliteSubjectKeys(path)
    reader = sqlite3.connect(path)
    try:
        sid, key = store.key_for("email", "alice@example.org")
        store.key_for("email", "bob@example.org")
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM subject_keys").fetchone()  # (a read snapshot the checkpoint must wait on)
        # (its 50 retries at once: no sleep between them, and each checkpoint waits 10 ms for the reader, not 30 s)
        monkeypatch.setattr(keys_module.time, "sleep", no_sleep)
        store._conn.execute("PRAGMA busy_timeout = 10")  # pyright: ignore[reportPrivateUsage]
        with pytest.raises(KeyStoreUnusable, match="nothing was erased; run the erasure again"):
            store.erase("email", "alice@example.org")
        assert store.key_for("email", "alice@example.org") == (sid, key), "a failed erasure changes nothing"
        reader.rollback()
        assert store.erase("email", "alice@example.org") == sid  # (as the message says)
        assert copies_of(key, path) == [], "a copy of the erased key survived the erasure run again"
        assert store.find("email", "alice@example.org") is None
        assert store.find("email", "bob@example.org") is not None
    finally:
        reader.close()
        store.close()


def test_an_erasure_leaves_no_copy_even_with_the_store_grown_past_a_checkpoint(tmp_path: Path) -> None:
    """Withstood: with many subjects (keys spread over pages, some already folded into the database file by
    earlier checkpoints) an erasure leaves the key in neither the file nor its WAL (secure_delete zeroes the freed
    cell, TRUNCATE empties the WAL); a key made after it and the others are still there."""
    path = tmp_path / KEY_STORE_FILE
    store = SqliteSubjectKeys(path)
    try:
        made = [store.key_for("email", f"user{n}@example.org") for n in range(300)]
        store.erase("email", "user0@example.org")  # (a checkpoint: the rest now live in the database file)
        _, key = made[150]
        assert copies_of(key, path) == ["privacy.db"]
        store.erase("email", "user150@example.org")
        assert copies_of(key, path) == []
        assert all(copies_of(k, path) == ["privacy.db"] for _, k in (made[1], made[149], made[299]))
    finally:
        store.close()


def test_what_in_flight_work_writes_after_an_erasure_is_not_readable(tmp_path: Path) -> None:
    """Was a hole (medium): erasure destroys the subject's key, but work already under way holds the subject's data in
    memory (a runner mid-task: the task's text, the conversation; a body serving its calls) and goes on writing it
    (the next transcript line, the next audit event's rationale). `key_for` then makes the subject a new key, so
    what is written after the erasure is readable again (`swarm privacy export` shows it) until the subject is
    erased a second time. Reproduce: the runner's protector and the CLI's on one key store file (as `swarm agents
    up` and `swarm privacy erase --agent` are): protect, erase, protect the same text again, reveal it. Fixed:
    the store keeps a tombstone per erased subject (its keyed-hash lookup, never the subject or a key), `key_for`
    refuses it (`SubjectErased`) and the protector redacts the value (`[pii:email:erased]`); `swarm privacy unerase
    SUBJECT --reason` lifts it for a subject who comes back (`test_unerase.py`)."""
    path = tmp_path / KEY_STORE_FILE
    runner = Protector(PrivacyConfig(), SqliteSubjectKeys(path))
    cli = Protector(PrivacyConfig(), SqliteSubjectKeys(path))
    try:
        text = "reply to alice@example.org about the refund"
        before = runner.protect(text)
        assert cli.keys.erase("email", "alice@example.org") is not None
        assert "alice@example.org" not in cli.reveal(before), "what was written before is erased"
        after = runner.protect(text)  # (the runner's next transcript line, from the task it holds in memory)
        assert "alice@example.org" not in cli.reveal(after), "written after the erasure, and readable"
    finally:
        runner.close()
        cli.close()
