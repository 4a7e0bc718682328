"""An erased subject stays erased (#21): each key store keeps a tombstone, so what is written about them after the
erasure (work under way, a new task naming them) is redacted, never encrypted under a new key; `swarm privacy
export` says when they were erased, nothing more; `swarm privacy unerase SUBJECT --reason` (a subject who came back)
lifts it on the brain and the body, audited, and what is written afterwards is kept encrypted again. A real `swarm
body` linked to a real brain."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from mcp import Client

from shared_protocol.privacy import (
    KEY_STORE_FILE,
    MemorySubjectKeys,
    PrivacyConfig,
    Protector,
    SqliteSubjectKeys,
    SubjectErased,
)
from tests.brain.helpers import LiveBrain

from .plant import leaks, plant
from .stack import body, events, linked, one_line, plant_calls, swarm, until_shipped, verifies

pytestmark = pytest.mark.anyio


async def test_an_erased_subject_stays_erased_until_a_human_lifts_it(
    tmp_path: Path, home: Path, live: LiveBrain
) -> None:
    p = plant()
    workspace, token, captain = await linked(tmp_path, live)
    auth = {"Authorization": f"Bearer {captain}"}
    scope = ["--workspace", str(workspace), "--brain", live.url, "--token", captain]
    async with Client(body(workspace, home, (live.url, token))) as client:
        await until_shipped(live.db, await plant_calls(client, p))
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        created = await http.post("/v1/tasks", json={"title": f"mail {p.email}", "value_usd": 1}, headers=auth)
        assert created.status_code == 201, created.text
        before = time.time()
        erased = await swarm(home, "privacy", "erase", p.email, *scope)
        assert erased.stdout.splitlines() == ["body: erased (email)", "brain: erased (email)"], erased.stderr

        # Written after the erasure (a new task naming them): redacted, no new key made.
        late = await http.post("/v1/tasks", json={"title": f"again {p.email}", "value_usd": 1}, headers=auth)
        assert late.status_code == 201, late.text
        assert late.json()["title"] == "again [pii:email:erased]"
        exported = await swarm(home, "privacy", "export", p.email, *scope, "--json")
        assert exported.returncode == 1, exported.stdout  # (nothing held anywhere)
        shown = json.loads(exported.stdout)
        assert shown["body"] is None and shown["brain"] is None
        assert set(shown["erased"]) == {"body", "brain"}  # (when, in ISO 8601: nothing more)
        assert all(time.strftime("%Y-%m-%d", time.gmtime(before)) in when for when in shown["erased"].values())
        text = await swarm(home, "privacy", "export", p.email, *scope)
        assert [line.split(" (erased ")[0] for line in text.stdout.splitlines()] == [
            "body: nothing held",
            "brain: nothing held",
        ]
        for key_store in (home, live.db.parent):  # (the tombstones hold neither the subject nor a key)
            assert leaks([key_store], p.values()) == []
        with sqlite3.connect(live.db.parent / KEY_STORE_FILE) as conn:
            assert conn.execute("SELECT count(*) FROM erased_subjects").fetchone() == (1,)
            assert conn.execute("SELECT count(*) FROM subject_keys WHERE kind = 'email'").fetchone() == (0,)

        # Lifting it is a human's deliberate step, with a reason.
        missing = await swarm(home, "privacy", "unerase", p.email, *scope)
        assert missing.returncode == 2 and "--reason" in missing.stderr
        blank = await swarm(home, "privacy", "unerase", p.email, *scope, "--reason", " ")
        one_line(blank, "--reason")
        lifted = await swarm(home, "privacy", "unerase", p.email, *scope, "--reason", "came back: new contract")
        assert lifted.returncode == 0, lifted.stderr
        assert lifted.stdout.splitlines() == ["body: unerased (email)", "brain: unerased (email)"]
        again = await swarm(home, "privacy", "unerase", p.email, *scope, "--reason", "twice")
        assert again.returncode == 1 and again.stdout.splitlines() == ["body: not erased", "brain: not erased"]

        back = await http.post("/v1/tasks", json={"title": f"welcome {p.email}", "value_usd": 1}, headers=auth)
        assert back.json()["title"] == f"welcome {p.email}", back.text  # (a new key: kept encrypted, readable)
        exported = await swarm(home, "privacy", "export", p.email, *scope, "--json")
        assert exported.returncode == 0, exported.stderr
        brain_held = json.loads(exported.stdout)["brain"]
        assert {i["value"] for i in brain_held} == {p.email}
        assert any(back.json()["id"] in i["where"] for i in brain_held)
        first = created.json()["id"]
        assert not [i for i in brain_held if first in i["where"]]  # (what was erased stays erased)
    with sqlite3.connect(live.db) as conn:
        logged = conn.execute("SELECT reason, detail FROM brain_log WHERE action = 'privacy_unerase'").fetchall()
    assert len(logged) == 1 and '"email"' in logged[0][1]
    audited = [e for e in await events(home, workspace) if e.get("tool") == "privacy.unerase"]
    assert len(audited) == 1 and audited[0]["detail"] == {"kind": "email"}
    await verifies(home, workspace)
    assert leaks([home, live.db.parent], p.values()) == []


def test_a_tombstone_holds_no_key_and_only_unerase_lifts_it(tmp_path: Path) -> None:
    """The store's own contract: an erased subject gets no new key (`SubjectErased`) from this connection or
    another's, its tombstone is its keyed lookup (no key, no subject, in the file or its WAL), export's
    `erased_at` is when, and `unerase` gives a returning subject a new key (the old one stays gone)."""
    path = tmp_path / KEY_STORE_FILE
    store, other = SqliteSubjectKeys(path), SqliteSubjectKeys(path)
    try:
        sid, key = store.key_for("email", "carol@example.org")
        assert store.erased_at("email", "carol@example.org") is None
        before = time.time()
        assert store.erase("email", "carol@example.org") == sid
        for keys in (store, other):
            with pytest.raises(SubjectErased, match="email was erased"):
                keys.key_for("email", "carol@example.org")
            assert keys.find("email", "carol@example.org") is None
            assert (keys.erased_at("email", "carol@example.org") or 0) >= before
        assert other.key_for("email", "dave@example.org")[0] != sid  # (others are untouched)
        files = [f for f in tmp_path.iterdir() if f.name.startswith(KEY_STORE_FILE)]
        assert not [f for f in files if key in f.read_bytes() or b"carol" in f.read_bytes()]
        assert store.erase("email", "carol@example.org") is None  # (nothing held: erased already)

        assert other.unerase("email", "carol@example.org") is True
        assert store.unerase("email", "carol@example.org") is False  # (once)
        new_sid, new_key = store.key_for("email", "carol@example.org")
        assert (new_sid, new_key) != (sid, key) and store.key_by_id(sid) is None
    finally:
        store.close()
        other.close()


def test_the_memory_store_keeps_tombstones_too() -> None:
    keys = MemorySubjectKeys()
    protector = Protector(PrivacyConfig(), keys)
    sealed = protector.protect("mail erin@example.org")
    assert keys.erase("email", "erin@example.org") is not None
    assert protector.protect("mail erin@example.org") == "mail [pii:email:erased]"
    assert protector.reveal(sealed) == "mail [pii:email:erased]"
    assert keys.unerase("email", "erin@example.org")
    assert protector.reveal(protector.protect("mail erin@example.org")) == "mail erin@example.org"
