"""A parked task's saved state: everything a restarted runner needs comes back as it was saved; a file that is
missing, cut off, of another format or wrong in a field is `ParkedStateBroken` naming the file and the problem."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from agent_runner.conversation import AssistantMessage, ToolCall, ToolResult, ToolResultsMessage, UserMessage
from agent_runner.loop import HeldCall, TaskRun
from agent_runner.parked import (
    ParkedStateBroken,
    SavedPark,
    load_parked,
    parked_path,
    remove_parked,
    save_parked,
    saved_task_ids,
)
from agent_runner.wallet import TaskSpend
from shared_protocol.brain import Claimant, Task

CALL = ToolCall(id="call_1_0", name="run_command", arguments={"argv": ["python3", "-c", "print(1)"], "rationale": "r"})


def saved(tmp_path: Path) -> SavedPark:
    task = Task(
        id="task_1",
        title="write two files",
        description="",
        value_usd=1.0,
        state="waiting_approval",
        created_at=datetime(2030, 1, 1, tzinfo=UTC),
        created_by="captain",
        claimed_by=Claimant(body_id="body_1", agent="worker-1"),
        parked_decision_id="dec_1",
    )
    run = TaskRun(
        task_id=task.id,
        title=task.title,
        workspace=tmp_path / "shadow" / task.id,
        messages=[
            UserMessage(content="Task: write two files"),
            AssistantMessage(content="In one go.", tool_calls=(CALL,)),
            ToolResultsMessage(results=(ToolResult(call_id=CALL.id, content="needs approval", is_error=True),)),
        ],
        steps=1,
        files={"a.txt"},
        tool_calls=1,
        refusals=1,
        held=HeldCall(call=CALL, step=1, text="In one go."),
        decision_id="dec_1",
        transcript=[{"step": 1, "content": "In one go.", "usage": {"input_tokens": 700}}],
    )
    spend = TaskSpend(task_id=task.id, model="gpt-4o-mini", usd=Decimal("0.000123"), input_tokens=700, calls=1)
    return SavedPark(
        task=task,
        run=run,
        claim_token="clm_x",
        workspace=run.workspace,
        shadow_copy=True,
        active_s=1.5,
        mode="shadow",
        spend=spend,
    )


def test_a_saved_parked_task_comes_back_whole_and_is_listed_until_removed(tmp_path: Path) -> None:
    path = parked_path(tmp_path, "task_1")
    save_parked(path, saved(tmp_path), privacy=None)
    assert load_parked(path, privacy=None) == saved(tmp_path)
    assert saved_task_ids(tmp_path) == ["task_1"]
    assert [p.name for p in path.parent.iterdir()] == ["task_1.json"], "no temporary file is left behind"
    remove_parked(path)
    remove_parked(path)  # (gone already: nothing to do)
    assert saved_task_ids(tmp_path) == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "is missing"),
        ('{"format": 1, "task": ', "is corrupt"),
        ("[]", "is corrupt (not a JSON object)"),
        ('{"format": 2}', "is corrupt (format 2, this runner reads format 1)"),
    ],
)
def test_a_missing_or_broken_saved_state_is_refused_naming_the_file(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    path = parked_path(tmp_path, "task_1")
    if content is not None:
        path.parent.mkdir(parents=True)
        path.write_text(content)
    with pytest.raises(ParkedStateBroken) as refused:
        load_parked(path, privacy=None)
    assert str(refused.value).startswith(f"its saved state {path} {problem}")


def test_a_saved_state_with_a_wrong_field_is_refused(tmp_path: Path) -> None:
    path = parked_path(tmp_path, "task_1")
    save_parked(path, saved(tmp_path), privacy=None)
    data = json.loads(path.read_text())
    data["run"]["messages"][0]["role"] = "system"
    path.write_text(json.dumps(data))
    with pytest.raises(ParkedStateBroken, match="a message of role 'system'"):
        load_parked(path, privacy=None)
    data["run"]["messages"][0]["role"] = "user"
    data["spend"]["usd"] = "lots"
    path.write_text(json.dumps(data))
    with pytest.raises(ParkedStateBroken, match="is corrupt"):
        load_parked(path, privacy=None)
