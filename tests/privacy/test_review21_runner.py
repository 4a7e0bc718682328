"""Adversarial review of #21 (the agent runner's own files): the brain serves a task's text decrypted to the
runner that claims it, and the runner keeps that text, the model's turns and the command output it read on its
own disk. Fixed: it protects them with its body's keys (`agent_runner.records`), so an erasure reaches them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from agent_runner.conversation import AssistantMessage, ToolCall, ToolResult, ToolResultsMessage, UserMessage
from agent_runner.loop import HeldCall
from agent_runner.parked import SavedPark, load_parked, parked_path, save_parked
from agent_runner.records import kept_texts, save_transcript
from shared_protocol.privacy import KEY_STORE_FILE, PrivacyConfig, Protector, SqliteSubjectKeys
from tests.runner.test_parked_state import saved

from .plant import Planted, leaks, plant


def _parked_with(p: Planted, tmp_path: Path) -> SavedPark:
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
        transcript=[{"step": 1, "content": f"I will call {p.phone}.", "tool_calls": [{"arguments": {p.ip: p.card}}]}],
    )
    task = base.task.model_copy(update={"title": f"Refund {p.email}", "description": p.text()})
    return dataclasses.replace(base, task=task, run=run)


def test_a_parked_tasks_file_keeps_no_personal_data_in_clear(tmp_path: Path) -> None:
    """Was HOLE (high): a task parked on a decision was saved to `<agent work dir>/parked/<task id>.json` with the
    task as the brain sent it (decrypted for its claimant), the whole conversation (the task text, the model's
    turns, every command output it read) and the held call's arguments, all in clear; `swarm privacy erase` did
    not reach the runner's disk, and the sweep did not search it. The same went for `transcripts/<task
    id>.jsonl`. Now both are protected with the agent body's keys and read back decrypted; once the subject is
    erased they load with the values erased, and the held call says it named an erased subject."""
    p = plant()
    work = tmp_path / "agent"
    protector = Protector(PrivacyConfig(), SqliteSubjectKeys(tmp_path / "body" / KEY_STORE_FILE))
    parked = _parked_with(p, tmp_path)
    path = parked_path(work, parked.task.id)
    save_parked(path, parked, privacy=protector)
    save_transcript(work / "transcripts" / f"{parked.task.id}.jsonl", parked.run.transcript, privacy=protector)
    assert leaks([work], p.values()) == []

    back = load_parked(path, privacy=protector)
    assert back == parked  # the runner reads back what it needs, as it was
    assert back.task.title == f"Refund {p.email}" and not back.held_call_erased
    subject = protector.keys.find("email", p.email.lower())
    assert subject is not None
    held = {(where, h.value) for where, text in kept_texts(work) for h in protector.held(text, subject)}
    assert held == {("parked/task_1.json", p.email)}  # (the transcript named only the phone, the IP and the card)

    assert protector.keys.erase("email", p.email.lower()) is not None
    erased = load_parked(path, privacy=protector)  # still loads: an erased subject's values read as erased
    assert erased.task.title == "Refund [pii:email:erased]"
    assert erased.held_call_erased
    assert erased.run.held is not None and erased.run.held.call.arguments["argv"] == ["mail", "[pii:email:erased]"]
    assert p.phone in erased.task.description  # another subject's data still reads back
    assert not any(p.email in json.dumps(text) for _, text in kept_texts(work))
    assert leaks([work, tmp_path / "body"], p.values()) == []


def test_a_held_call_naming_an_erased_subject_in_its_rationale_only_can_still_run(tmp_path: Path) -> None:
    """The decision approved what the call does, not why: an erased subject in its rationale alone does not make
    the held call unrunnable."""
    p = plant()
    protector = Protector(PrivacyConfig(), SqliteSubjectKeys(tmp_path / KEY_STORE_FILE))
    base = saved(tmp_path)
    call = ToolCall(id="call_1_0", name="run_command", arguments={"argv": ["true"], "rationale": f"for {p.email}"})
    parked = dataclasses.replace(base, run=dataclasses.replace(base.run, held=HeldCall(call=call, step=1, text="")))
    path = parked_path(tmp_path / "agent", parked.task.id)
    save_parked(path, parked, privacy=protector)
    protector.keys.erase("email", p.email.lower())
    back = load_parked(path, privacy=protector)
    assert not back.held_call_erased
    assert back.run.held is not None and back.run.held.call.arguments["rationale"] == "for [pii:email:erased]"


def test_redaction_off_keeps_the_files_as_written_and_still_reads_back_what_was_protected(tmp_path: Path) -> None:
    p = plant()
    keys = SqliteSubjectKeys(tmp_path / KEY_STORE_FILE)
    on, off = Protector(PrivacyConfig(), keys), Protector(PrivacyConfig(redaction=False), keys)
    parked = _parked_with(p, tmp_path)
    first, second = parked_path(tmp_path / "agent", "one"), parked_path(tmp_path / "agent", "two")
    save_parked(first, parked, privacy=on)
    save_parked(second, parked, privacy=off)
    assert p.email not in first.read_text() and p.email in second.read_text()
    assert load_parked(first, privacy=off) == load_parked(second, privacy=off) == parked
