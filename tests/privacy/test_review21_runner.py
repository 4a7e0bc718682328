"""Adversarial review of #21 (the agent runner's own files): the brain serves a task's text decrypted to the
runner that claims it, and the runner keeps that text, the model's turns and the command output it read on its
own disk."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from agent_runner.conversation import AssistantMessage, ToolCall, ToolResult, ToolResultsMessage, UserMessage
from agent_runner.loop import HeldCall
from agent_runner.parked import load_parked, parked_path, save_parked
from tests.runner.test_parked_state import saved

from .plant import leaks, plant


@pytest.mark.xfail(strict=True, reason="HOLE (high): the runner's parked-task file keeps personal data in clear")
def test_a_parked_tasks_file_keeps_no_personal_data_in_clear(tmp_path: Path) -> None:
    """HOLE (high): a task parked on a decision is saved to `<agent work dir>/parked/<task id>.json` with the task
    as the brain sent it (decrypted for its claimant), the whole conversation (the task text, the model's turns,
    every command output it read) and the held call's arguments, all in clear; `swarm privacy erase` does not
    reach the runner's disk, and the sweep does not search it. The same goes for `transcripts/<task id>.jsonl`
    (`Runner._save_transcript`). Reproduce: park a task whose description holds an email (below: the real
    `save_parked`), then grep the file. Fix: the runner protects what it writes with a `Protector` over its own
    key store in its work dir (shared_protocol, so the import contract holds) and reveals on load; `swarm privacy
    erase` shreds that store's subject key too (or the runner drops parked state it cannot read back)."""
    p = plant()
    base = saved(tmp_path)
    call = ToolCall(id="call_1_0", name="run_command", arguments={"argv": ["mail", p.email], "rationale": p.text()})
    run = dataclasses.replace(
        base.run,
        messages=[
            UserMessage(content=f"Task: refund {p.email}\n{p.text()}"),
            AssistantMessage(content=f"I will call {p.phone}.", tool_calls=(call,)),
            ToolResultsMessage(results=(ToolResult(call_id=call.id, content=p.text(), is_error=False),)),
        ],
        held=HeldCall(call=call, step=1, text=f"I will call {p.phone}."),
    )
    task = base.task.model_copy(update={"title": f"Refund {p.email}", "description": p.text()})
    path = parked_path(tmp_path / "agent", task.id)
    save_parked(path, dataclasses.replace(base, task=task, run=run))
    assert load_parked(path).task.title == f"Refund {p.email}"  # the runner reads back what it needs
    assert leaks([tmp_path / "agent"], p.values()) == []
