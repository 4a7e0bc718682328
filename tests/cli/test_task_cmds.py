"""`swarm task add|list|show|cancel` against a real brain on 127.0.0.1, run as the operator runs them (a process)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from brain_server import BrainSettings
from brain_server.state import sqlite_url
from tests.brain.helpers import LiveBrain, batch, live_brain, ok, registration, rerun_event
from tests.cli.inprocess import swarm_on as swarm

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveBrain]:
    async with live_brain(BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"))) as brain:
        yield brain


def one_line(code: int, stderr: str) -> str:
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


async def test_a_task_is_added_listed_shown_with_its_outcome_and_cancelled(live: LiveBrain, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    code, out, err = await swarm(
        live,
        "task", "add", "--title", "fix the flaky test", "--acceptance", "pytest -q", "--value-usd", "25",
        "--repo", str(repo), home=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    task_id = out.strip().splitlines()[-1]
    assert task_id.startswith("task_")
    code, out, err = await swarm(live, "task", "add", "--title", "second", home=tmp_path, as_="captain")
    assert code == 0, err
    other_id = out.strip().splitlines()[-1]

    code, out, _ = await swarm(live, "task", "list", home=tmp_path)
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == [task_id, other_id]
    code, out, _ = await swarm(live, "task", "list", "--json", home=tmp_path)
    listed = json.loads(out)
    assert (listed[0]["id"], listed[0]["repo"], listed[0]["acceptance"]) == (task_id, str(repo.resolve()), "pytest -q")

    async with live.client() as api:
        claimed = ok(await api.post("/v1/tasks/claim", {"body_id": "body-a", "agent": "w1"}, as_="body"))
        assert claimed["task"]["id"] == task_id
        ok(await api.post("/v1/bodies/register", registration("body-a"), as_="body"))
        rerun = rerun_event("body-a", 1, "genesis", action_id="act_42", at=0, argv=["pytest", "-q"], task_id=task_id)
        ok(await api.post("/v1/audit", batch("body-a", [rerun]), as_="body"))  # the body's own record of it
        outcome = {
            "claim_token": claimed["claim_token"],
            "outcome": "succeeded",
            "summary": "deflaked",
            "verification": {"command": "pytest -q", "exit_code": 0, "action_id": "act_42", "verified": True},
            "evidence": {"branch": "swarm/flaky", "commit": "abc123"},
            "spend": {"usd": 0.75, "input_tokens": 5000, "output_tokens": 400, "steps": 6, "model": "gpt-4o"},
        }
        ok(await api.post(f"/v1/tasks/{task_id}/outcome", outcome, as_="body"))

    code, out, err = await swarm(live, "task", "show", task_id, home=tmp_path)
    assert code == 0, err
    assert "state:        succeeded" in out
    assert "VERIFIED — `pytest -q` exited 0 (audit act_42)" in out
    assert "commit: abc123" in out and "branch: swarm/flaky" in out
    assert "$0.7500, 6 steps, 5000 in / 400 out" in out and "gpt-4o" in out
    history = out[out.index("history:") :].splitlines()[1:]
    assert [line.split()[1] for line in history] == ["created", "claimed", "outcome", "verification"]
    assert "confirmed: the body's audit event act_42 shows the acceptance command exited 0" in out
    code, out, _ = await swarm(live, "task", "list", "--state", "succeeded", home=tmp_path)
    assert [line.split()[:3] for line in out.splitlines()] == [[task_id, "succeeded", "verified"]]

    code, out, err = await swarm(live, "task", "cancel", other_id, "--reason", "not needed", home=tmp_path)
    assert code == 0 and "cancelled" in out, err
    code, out, _ = await swarm(live, "task", "show", other_id, home=tmp_path)
    assert "state:        cancelled" in out and "cancelled by approver-1" in out and "reason=not needed" in out


async def test_task_commands_fail_in_one_line_naming_the_problem_and_change_nothing(
    live: LiveBrain, tmp_path: Path
) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    add = ("task", "add", "--title", "t", "--repo")
    assert "no such directory" in one_line(*(await swarm(live, *add, str(tmp_path / "nope"), home=tmp_path))[::2])
    assert "not a directory" in one_line(*(await swarm(live, *add, str(a_file), home=tmp_path))[::2])
    assert "--title" in one_line(*(await swarm(live, "task", "add", "--title", " ", home=tmp_path))[::2])
    assert "--value-usd" in one_line(
        *(await swarm(live, "task", "add", "--title", "t", "--value-usd", "-1", home=tmp_path))[::2]
    )
    assert "not_found" in one_line(*(await swarm(live, "task", "show", "task_nope", home=tmp_path))[::2])
    assert "not_found" in one_line(*(await swarm(live, "task", "cancel", "task_nope", home=tmp_path))[::2])
    assert "forbidden" in one_line(*(await swarm(live, "task", "add", "--title", "t", home=tmp_path, as_="body"))[::2])
    assert "SWARM_BRAIN_URL" in one_line(*(await swarm(live, "task", "list", home=tmp_path, brain=False))[::2])
    async with live.client() as api:
        assert ok(await api.get("/v1/tasks", as_="captain"))["tasks"] == []
        queued = ok(await api.post("/v1/tasks", {"title": "t"}, as_="captain"), 201)
    code, _, _ = await swarm(live, "task", "cancel", queued["id"], home=tmp_path)
    assert code == 0
    assert "invalid_transition" in one_line(*(await swarm(live, "task", "cancel", queued["id"], home=tmp_path))[::2])


async def test_a_task_names_its_acceptance_inputs_or_none_and_bad_ones_are_one_clear_line(
    live: LiveBrain, tmp_path: Path
) -> None:
    code, out, err = await swarm(
        live,
        "task", "add", "--title", "t", "--acceptance", "python3 check.py",
        "--acceptance-input", "check.py", "--acceptance-input", "fixtures/**", home=tmp_path,
    )  # fmt: skip
    assert code == 0 and "acceptance inputs: check.py, fixtures/**" in out, err
    task_id = out.strip().splitlines()[-1]
    code, out, err = await swarm(live, "task", "show", task_id, "--json", home=tmp_path)
    assert code == 0 and json.loads(out)["acceptance_inputs"] == ["check.py", "fixtures/**"], err
    code, out, err = await swarm(
        live, "task", "add", "--title", "u", "--acceptance", "pytest -q", "--no-acceptance-inputs", home=tmp_path
    )
    assert code == 0, err
    code, out, _ = await swarm(live, "task", "show", out.strip().splitlines()[-1], home=tmp_path)
    assert "inputs:       (none: the model may change them)" in out
    code, out, _ = await swarm(live, "task", "add", "--title", "v", "--acceptance", "pytest -q", home=tmp_path)
    code, out, _ = await swarm(live, "task", "show", out.strip().splitlines()[-1], home=tmp_path)
    assert "inputs:       (default: the files the acceptance command names, and the tests)" in out
    for args, problem in [
        (["--acceptance-input", "/etc/passwd"], "must be relative to the repository"),
        (["--acceptance-input", "a/../../b"], "must stay inside the repository"),
        (["--acceptance-input", ""], "must not be empty"),
        (["--acceptance-input", "x.py", "--no-acceptance-inputs"], "not both"),
    ]:
        code, _, err = await swarm(
            live, "task", "add", "--title", "w", "--acceptance", "pytest -q", *args, home=tmp_path
        )
        assert problem in one_line(code, err), err
    code, _, err = await swarm(live, "task", "add", "--title", "w", "--acceptance-input", "x.py", home=tmp_path)
    assert "give --acceptance too" in one_line(code, err)
    code, out, _ = await swarm(live, "task", "list", "--json", home=tmp_path)
    assert len(json.loads(out)) == 3, "nothing of a refused task was queued"


async def test_a_task_names_its_setup_and_a_bad_one_is_one_clear_line(live: LiveBrain, tmp_path: Path) -> None:
    setup = "sh -c 'uv venv -q .venv && uv pip install -q -r requirements.txt'"
    code, out, err = await swarm(
        live, "task", "add", "--title", "t", "--acceptance", "pytest -q", "--setup", setup, home=tmp_path
    )
    assert code == 0 and f"setup: {setup}" in out, err
    task_id = out.strip().splitlines()[-1]
    code, out, err = await swarm(live, "task", "show", task_id, home=tmp_path)
    assert code == 0 and f"setup:        {setup}" in out, err
    code, out, _ = await swarm(live, "task", "show", task_id, "--json", home=tmp_path)
    assert json.loads(out)["setup"] == setup
    for bad, problem in [
        ("uv sync\nrm -rf /", "one command line"),
        ("sh -c 'unclosed", "quotation"),
        ("x" * 4001, "longer"),
    ]:
        code, _, err = await swarm(live, "task", "add", "--title", "w", "--setup", bad, home=tmp_path)
        assert problem in one_line(code, err), err
    code, out, _ = await swarm(live, "task", "list", "--json", home=tmp_path)
    assert len(json.loads(out)) == 1, "nothing of a refused task was queued"
