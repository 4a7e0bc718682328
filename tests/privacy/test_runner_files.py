"""An agent's runner's own files (#21): parked states and transcripts written in clear before the runner protected
them are protected by `swarm privacy migrate --agent NAME` (each file whole: a migration cut short leaves every file
old or new, and the next run finishes), `swarm privacy export --agent NAME` lists what they hold about a subject
(`runner PATH`, relative to the agent's work dir), and `swarm privacy erase --agent NAME` shreds them with the
body's key store they share."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent_runner import records
from agent_runner.parked import load_parked, parked_path, save_parked
from agent_runner.records import migrate_records, save_transcript
from body_mcp.state import StatePaths
from shared_protocol.privacy import KEY_STORE_FILE, PrivacyConfig, Protector, SqliteSubjectKeys
from swarm_cli.agent_cmds import work_root
from tests.cli.inprocess import run_swarm as run_here

from .plant import Planted, leaks, plant
from .test_review21_runner import _parked_with  # pyright: ignore[reportPrivateUsage]

AGENT = """
[models.scripted]
provider = "scripted"
model = "gpt-4o-mini"
script = "script.jsonl"

[[agents]]
name = "worker-1"
model = "scripted"
prompt = "You fix small bugs."
tools = ["read_text_file"]
"""


def _in_clear(work: Path, p: Planted, tmp_path: Path) -> None:
    """The runner's files as a runner before this change wrote them: in clear."""
    parked = _parked_with(p, tmp_path)
    save_parked(parked_path(work, parked.task.id), parked, privacy=None)
    entries: list[dict[str, Any]] = [
        {"step": 1, "content": f"mail {p.email}", "tool_calls": []},
        {"step": 2, "content": p.text()},
    ]
    save_transcript(work / "transcripts" / f"{parked.task.id}.jsonl", entries, privacy=None)
    (work / "parked" / "cut.json").write_text(f'{{"format": 1, "task": {{"title": "Refund {p.email}')


def run_swarm(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in this process (a new Python's start costs seconds on a loaded machine)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SWARM_BRAIN_URL", "SWARM_TOKEN", "SWARM_CONFIG")}
    return run_here(args, env | {"SWARM_HOME": str(home)})


def _protector(home: Path) -> Protector:
    return Protector(PrivacyConfig(), SqliteSubjectKeys(StatePaths.for_agent(home, "worker-1").dir / KEY_STORE_FILE))


def test_migrate_protects_the_runners_files_in_clear_and_export_and_erase_reach_them(tmp_path: Path) -> None:
    p = plant()
    home = tmp_path / "home"
    home.mkdir()
    (home / "swarm.toml").write_text(AGENT)
    assert run_swarm(home, "audit", "tail", "--agent", "worker-1").returncode == 0  # (the agent's body state)
    work = work_root(home) / "worker-1"
    _in_clear(work, p, tmp_path)
    assert leaks([work], p.values())

    migrated = run_swarm(home, "privacy", "migrate", "--agent", "worker-1", "--json")
    assert migrated.returncode == 0, migrated.stderr
    said = json.loads(migrated.stdout)["runner"]
    assert said.startswith("3 file(s)") and "parked/task_1.json" in said and "transcripts/task_1.jsonl" in said, said
    assert leaks([work, home], p.values()) == []
    protector = _protector(home)
    try:
        assert load_parked(parked_path(work, "task_1"), privacy=protector) == _parked_with(p, tmp_path)
        lines = (work / "transcripts" / "task_1.jsonl").read_text().splitlines()
        assert [protector.reveal_value(json.loads(line))["content"] for line in lines] == [f"mail {p.email}", p.text()]
    finally:
        protector.close()
    again = run_swarm(home, "privacy", "migrate", "--agent", "worker-1")
    assert again.returncode == 0, again.stderr
    assert "runner: nothing to migrate" in again.stdout, again.stdout

    exported = run_swarm(home, "privacy", "export", p.email, "--agent", "worker-1", "--json")
    assert exported.returncode == 0, exported.stderr
    held = json.loads(exported.stdout)["body"]
    assert {(i["where"], i["value"]) for i in held} == {
        ("runner parked/task_1.json", p.email),
        ("runner parked/cut.json", p.email),
        ("runner transcripts/task_1.jsonl", p.email),
    }

    erased = run_swarm(home, "privacy", "erase", p.email, "--agent", "worker-1")
    assert erased.returncode == 0 and erased.stdout.splitlines() == ["body: erased (email)"], erased.stderr
    gone = run_swarm(home, "privacy", "export", p.email, "--agent", "worker-1")
    assert gone.returncode == 1
    protector = _protector(home)
    try:
        back = load_parked(parked_path(work, "task_1"), privacy=protector)
        assert back.task.title == "Refund [pii:email:erased]" and back.held_call_erased
        assert p.phone in back.task.description
    finally:
        protector.close()
    assert leaks([work, home], p.values()) == []


def test_a_migration_cut_short_leaves_each_file_whole_and_the_next_run_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = plant()
    work = tmp_path / "work"
    _in_clear(work, p, tmp_path)
    before = {path: path.read_bytes() for path in records.record_files(work)}
    protector = Protector(PrivacyConfig(), SqliteSubjectKeys(tmp_path / KEY_STORE_FILE))
    renamed: list[str] = []

    def replace_once(src: str, dst: str | Path) -> None:
        if renamed:
            raise OSError("killed here")  # (the second file's new text is written, not yet renamed into place)
        renamed.append(str(dst))
        os.rename(src, dst)

    monkeypatch.setattr(records.os, "replace", replace_once)
    with pytest.raises(OSError, match="killed here"):
        migrate_records(work, protector)
    monkeypatch.undo()
    after = {path: path.read_bytes() for path in records.record_files(work)}
    assert set(after) == set(before), "a temporary file was left behind"
    changed = [path for path in after if after[path] != before[path]]
    assert [str(path) for path in changed] == renamed  # one file new and whole, every other one as it was
    assert len(leaks([work], p.values())) > 0

    finished = migrate_records(work, protector)
    assert len(finished) == 2 and changed[0] not in finished
    assert leaks([work], p.values()) == []
    assert migrate_records(work, protector) == []
