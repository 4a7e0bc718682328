"""An erasure tombstones the subject wherever it is asked, whether or not a key was held there (#21): the brain held
a task naming them and the body never saw them, so `swarm privacy erase --brain` must still keep a runner that read
the task before the erasure from making the body a key for them afterwards. The CLI says what each place did
(`erased`, `nothing held; tombstoned`, `nothing held; erased before, WHEN`); `export` and `unerase` see the
tombstone. Real key stores on SQLite files (and the in-memory one), a real `swarm body` linked to a live brain."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from mcp import Client

from shared_protocol.privacy import (
    KEY_STORE_FILE,
    MemorySubjectKeys,
    SqliteSubjectKeys,
    SubjectErased,
    SubjectKeys,
)
from shared_protocol.privacy import _keys as keys_module  # pyright: ignore[reportPrivateUsage]
from shared_protocol.privacy.exceptions import KeyStoreUnusable
from tests.body.helpers import ok
from tests.brain.helpers import LiveBrain

from .plant import leaks, plant
from .stack import body, events, linked, swarm, until_registered, verifies


@pytest.mark.anyio
async def test_a_body_that_never_saw_the_subject_tombstones_it_and_keeps_nothing_written_after(
    tmp_path: Path, home: Path, live: LiveBrain
) -> None:
    p = plant()
    workspace, token, captain = await linked(tmp_path, live)
    scope = ["--workspace", str(workspace), "--brain", live.url, "--token", captain]
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:  # (the brain holds them; the body never did)
        created = await http.post(
            "/v1/tasks",
            json={"title": f"refund {p.email}", "value_usd": 1},
            headers={"Authorization": f"Bearer {captain}"},
        )
        assert created.status_code == 201, created.text
    async with Client(body(workspace, home, (live.url, token))) as client:
        await until_registered(client, "write_file", {"path": "a.txt", "content": "a\n", "rationale": "start"})

        erased = await swarm(home, "privacy", "erase", p.email, *scope, "--reason", "asked")
        assert erased.returncode == 0, erased.stderr
        assert erased.stdout.splitlines() == ["body: nothing held; tombstoned (email)", "brain: erased (email)"]

        # The runner read the task before the erasure; it names them to its body now.
        late = f"refund sent to {p.email}"
        ok(await client.call_tool("write_file", {"path": "b.txt", "content": "b\n", "rationale": late}))
    (written,) = [e for e in await events(home, workspace) if e.get("rationale", "").startswith("refund sent")]
    assert written["rationale"] == "refund sent to [pii:email:erased]"
    (key_store,) = [found for found in home.rglob(KEY_STORE_FILE) if found.is_file()]  # (the body's)
    with closing(sqlite3.connect(key_store)) as conn:
        assert conn.execute("SELECT count(*) FROM subject_keys WHERE kind = 'email'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM erased_subjects WHERE kind = 'email'").fetchone() == (1,)
    (audited,) = [e for e in await events(home, workspace) if e.get("tool") == "privacy.erase"]
    assert audited["detail"] == {"kind": "email", "key_held": False} and p.email not in str(audited)

    exported = await swarm(home, "privacy", "export", p.email, *scope)
    assert exported.returncode == 1, exported.stderr  # (nothing held anywhere: when each erased it, nothing more)
    assert [line.split(" (erased ")[0] for line in exported.stdout.splitlines()] == [
        "body: nothing held",
        "brain: nothing held",
    ]
    again = await swarm(home, "privacy", "erase", p.email, *scope)
    assert again.returncode == 1 and "tombstoned all the same" in again.stderr
    assert [line.split(", ")[0] for line in again.stdout.splitlines()] == [
        "body: nothing held; erased before",
        "brain: nothing held; erased before",
    ]
    lifted = await swarm(home, "privacy", "unerase", p.email, *scope, "--reason", "came back")
    assert lifted.returncode == 0, lifted.stderr
    assert lifted.stdout.splitlines() == ["body: unerased (email)", "brain: unerased (email)"]
    await verifies(home, workspace)
    assert leaks([home, live.db.parent], [p.email, p.email.lower()]) == []


def no_sleep(_seconds: float) -> None:
    pass


@pytest.fixture(params=["sqlite", "memory"])
def keys(request: pytest.FixtureRequest, tmp_path: Path) -> SubjectKeys:
    return SqliteSubjectKeys(tmp_path / KEY_STORE_FILE) if request.param == "sqlite" else MemorySubjectKeys()


def test_each_store_tombstones_a_subject_it_holds_no_key_for(keys: SubjectKeys) -> None:
    try:
        assert keys.erase("email", "carol@example.org") is None  # (no key was held)
        first = keys.erased_at("email", "carol@example.org")
        assert first is not None
        with pytest.raises(SubjectErased):
            keys.key_for("email", "carol@example.org")
        assert keys.find("email", "carol@example.org") is None
        assert keys.erase("email", "carol@example.org") is None
        assert keys.erased_at("email", "carol@example.org") == first  # (erased again: the first time stays)
        sid, _ = keys.key_for("email", "dave@example.org")  # (others untouched)
        assert keys.erase("email", "dave@example.org") == sid
        assert keys.unerase("email", "carol@example.org") and keys.erased_at("email", "carol@example.org") is None
        assert keys.key_for("email", "carol@example.org")[0] != sid
    finally:
        keys.close()


def test_an_erasure_a_reader_held_up_leaves_no_tombstone_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All or nothing, with no key held too: a failed erasure ("nothing was erased; run the erasure again") lifts
    the tombstone it wrote, and keeps one written by an erasure before."""
    path = tmp_path / KEY_STORE_FILE
    store = SqliteSubjectKeys(path)
    reader = sqlite3.connect(path)
    try:
        assert store.erase("email", "erin@example.org") is None
        before = store.erased_at("email", "erin@example.org")
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM erased_subjects").fetchone()  # (a snapshot the checkpoint waits on)
        monkeypatch.setattr(keys_module.time, "sleep", no_sleep)
        store._conn.execute("PRAGMA busy_timeout = 10")  # pyright: ignore[reportPrivateUsage]
        for subject in ("carol@example.org", "erin@example.org"):
            with pytest.raises(KeyStoreUnusable, match="nothing was erased; run the erasure again"):
                store.erase("email", subject)
        assert store.erased_at("email", "carol@example.org") is None
        assert store.erased_at("email", "erin@example.org") == before
        reader.rollback()
        assert store.erase("email", "carol@example.org") is None
        assert store.erased_at("email", "carol@example.org") is not None
    finally:
        reader.close()
        store.close()
