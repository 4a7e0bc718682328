"""A parked task's state on disk, so a runner that restarts takes up its parked tasks again.

    path = parked_path(workdir, task_id)              # <agent work dir>/parked/<task id>.json
    save_parked(path, saved, privacy=protector)       # protected, atomically: a temporary file, fsync, a rename
    saved = load_parked(path, privacy=protector)      # ParkedStateBroken (naming what is wrong) if unreadable

A task parked on a decision keeps everything needed to resume it with a new body: the task as the brain sent it,
its claim token, the conversation and the held call (`TaskRun`), the workspace (a shadow copy stays on disk beside
it), the wall-clock time it used and what it spent (its money budget goes on from there). The file is written
before the brain is told the task is parked and removed once the task is resumed, finished or dropped.

Every string in it is protected by the agent body's `Protector` (`records`): personal data is kept encrypted under
its subject's key, and read back decrypted. A subject erased since (`swarm privacy erase --agent`) does not make
the file unreadable: their values load as `[pii:KIND:erased]`, and `SavedPark.held_call_erased` says whether the
held call's arguments named one. The runner then resumes the task with what is left (the model reads the erased
values as such), unless the held call named one: that call can no longer run as it was approved (the body checks
a replay's measured impact against the decision, not its arguments), so the task is given up to the brain with
that reason. A saved state in clear (written before this, or with `[privacy] redaction` off) loads as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import ValidationError

from shared_protocol.brain import Task
from shared_protocol.privacy import TOKEN, Protector

from .conversation import AssistantMessage, Message, ToolCall, ToolResult, ToolResultsMessage, UserMessage
from .exceptions import RunnerError
from .loop import HeldCall, TaskRun
from .records import protect, reveal, write_record
from .wallet import TaskSpend

FORMAT = 1
"""The file's `format`: a file of another format is not read (it is reported like a broken one)."""


class ParkedStateBroken(RunnerError):
    """A parked task's saved state cannot be used (missing, unreadable, not this format): the message says why."""


@dataclass(kw_only=True)
class SavedPark:
    """A parked task as the runner keeps it."""

    task: Task
    run: TaskRun
    claim_token: str
    workspace: Path
    shadow_copy: bool
    """The workspace is the runner's own copy (removed with the task)."""
    active_s: float
    """Wall-clock seconds the task has been worked so far."""
    mode: Literal["shadow", "live"]
    spend: TaskSpend
    held_call_erased: bool = False
    """Read back, the held call's arguments (its rationale aside) name a data subject erased since it was saved."""


def parked_path(workdir: Path, task_id: str) -> Path:
    return workdir / "parked" / f"{task_id}.json"


def save_parked(path: Path, saved: SavedPark, *, privacy: Protector | None) -> None:
    """Write `saved` to `path`, its personal data protected (`privacy`; None: as it is), whole or not at all."""
    write_record(path, json.dumps(protect(_encode(saved), privacy), default=str))


def load_parked(path: Path, *, privacy: Protector | None) -> SavedPark:
    """The saved state at `path`, revealed (`privacy`); `ParkedStateBroken` saying what is wrong when it is missing
    or unusable. Values of a subject erased since read `[pii:KIND:erased]` (`SavedPark.held_call_erased`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParkedStateBroken(f"its saved state {path} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParkedStateBroken(f"its saved state {path} cannot be read: {exc}") from None
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        sealed = cast(dict[str, Any], data)
        saved = _decode(cast(dict[str, Any], reveal(sealed, privacy)))
        saved.held_call_erased = _held_call_erased(sealed, privacy)
        return saved
    except (ValueError, KeyError, TypeError, InvalidOperation, ValidationError) as exc:
        what = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ParkedStateBroken(f"its saved state {path} is corrupt ({what})") from None


def remove_parked(path: Path) -> None:
    path.unlink(missing_ok=True)


def saved_task_ids(workdir: Path) -> list[str]:
    """The tasks with a saved state under `workdir`."""
    folder = workdir / "parked"
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def _held_call_erased(data: dict[str, Any], privacy: Protector | None) -> bool:
    """The held call's arguments, as stored (`data`: a file `_decode` read), hold a token no key opens any more."""
    held = data["run"]["held"]
    if privacy is None or held is None:
        return False
    arguments = cast(dict[str, Any], held["call"]["arguments"])
    text = json.dumps({k: v for k, v in arguments.items() if k != "rationale"})
    return any(m.group(2) is not None and privacy.keys.key_by_id(m.group(2)) is None for m in TOKEN.finditer(text))


# -- the file's shape ------------------------------------------------------------------------------


def _encode(saved: SavedPark) -> dict[str, Any]:
    run, spend = saved.run, saved.spend
    held = run.held
    return {
        "format": FORMAT,
        "task": saved.task.model_dump(mode="json"),
        "claim_token": saved.claim_token,
        "workspace": str(saved.workspace),
        "shadow_copy": saved.shadow_copy,
        "active_s": saved.active_s,
        "mode": saved.mode,
        "spend": {
            "usd": str(spend.usd),
            "input_tokens": spend.input_tokens,
            "output_tokens": spend.output_tokens,
            "cache_read_tokens": spend.cache_read_tokens,
            "cache_write_tokens": spend.cache_write_tokens,
            "calls": spend.calls,
            "attempts": spend.attempts,
            "model": spend.model,
        },
        "run": {
            "title": run.title,
            "messages": [_message(m) for m in run.messages],
            "steps": run.steps,
            "files": sorted(run.files),
            "tool_calls": run.tool_calls,
            "refusals": run.refusals,
            "held": None if held is None else {"call": _call(held.call), "step": held.step, "text": held.text},
            "decision_id": run.decision_id,
            "approved": run.approved,
            "transcript": run.transcript,
        },
    }


def _call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "arguments": dict(call.arguments)}


def _message(message: Message) -> dict[str, Any]:
    if isinstance(message, UserMessage):
        return {"role": "user", "content": message.content}
    if isinstance(message, AssistantMessage):
        return {"role": "assistant", "content": message.content, "tool_calls": [_call(c) for c in message.tool_calls]}
    return {
        "role": "tool_results",
        "results": [{"call_id": r.call_id, "content": r.content, "is_error": r.is_error} for r in message.results],
    }


def _decode(data: dict[str, Any]) -> SavedPark:
    if data.get("format") != FORMAT:
        raise ValueError(f"format {data.get('format')!r}, this runner reads format {FORMAT}")
    task = Task.model_validate(data["task"])
    raw_run: dict[str, Any] = data["run"]
    workspace = Path(_text(data["workspace"]))
    held = raw_run["held"]
    run = TaskRun(
        task_id=task.id,
        title=_text(raw_run["title"]),
        workspace=workspace,
        messages=[_read_message(m) for m in raw_run["messages"]],
        steps=_int(raw_run["steps"]),
        files={_text(f) for f in raw_run["files"]},
        tool_calls=_int(raw_run["tool_calls"]),
        refusals=_int(raw_run["refusals"]),
        held=None
        if held is None
        else HeldCall(call=_read_call(held["call"]), step=_int(held["step"]), text=_text(held["text"])),
        decision_id=None if raw_run["decision_id"] is None else _text(raw_run["decision_id"]),
        approved=bool(raw_run["approved"]),
        transcript=[dict(cast(dict[str, Any], e)) for e in raw_run["transcript"]],
    )
    raw_spend: dict[str, Any] = data["spend"]
    spend = TaskSpend(
        task_id=task.id,
        model=_text(raw_spend["model"]),
        usd=Decimal(_text(raw_spend["usd"])),
        input_tokens=_int(raw_spend["input_tokens"]),
        output_tokens=_int(raw_spend["output_tokens"]),
        cache_read_tokens=_int(raw_spend["cache_read_tokens"]),
        cache_write_tokens=_int(raw_spend["cache_write_tokens"]),
        calls=_int(raw_spend["calls"]),
        attempts=_int(raw_spend["attempts"]),
    )
    mode = data["mode"]
    if mode not in ("shadow", "live"):
        raise ValueError(f"mode {mode!r}")
    return SavedPark(
        task=task,
        run=run,
        claim_token=_text(data["claim_token"]),
        workspace=workspace,
        shadow_copy=bool(data["shadow_copy"]),
        active_s=float(data["active_s"]),
        mode=mode,
        spend=spend,
    )


def _read_call(raw: dict[str, Any]) -> ToolCall:
    arguments = raw["arguments"]
    if not isinstance(arguments, dict):
        raise TypeError("tool call arguments are not an object")
    return ToolCall(id=_text(raw["id"]), name=_text(raw["name"]), arguments=cast(dict[str, Any], arguments))


def _read_message(raw: dict[str, Any]) -> Message:
    role = raw["role"]
    if role == "user":
        return UserMessage(content=_text(raw["content"]))
    if role == "assistant":
        calls = tuple(_read_call(c) for c in raw["tool_calls"])
        return AssistantMessage(content=_text(raw["content"]), tool_calls=calls)
    if role == "tool_results":
        results = tuple(
            ToolResult(call_id=_text(r["call_id"]), content=_text(r["content"]), is_error=bool(r["is_error"]))
            for r in raw["results"]
        )
        return ToolResultsMessage(results=results)
    raise ValueError(f"a message of role {role!r}")


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected a whole number, got {type(value).__name__}")
    return value
