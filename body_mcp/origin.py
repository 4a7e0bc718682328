"""Where a tool call comes from: the `swarm/*` keys of its MCP request `_meta`.

The agent runner is an MCP client of its agent's body. The calls it makes for its model carry
`{"swarm/origin": "model", "swarm/turn": {"step": N, "text": "...", "tool_call_id": "..."}}`; its own
calls (the acceptance command, next_task, report_outcome) carry no turn; the runner's own `run_command` may name
the env dirs it runs with (`"swarm/env": "task" | "check"`, `"swarm/fresh_env": true`), which a model's call never
does, and its re-run of a task's acceptance command names the task (`{"swarm/origin": "runner", "swarm/task":
"task_…"}`), kept on the audit event, so that the brain takes that re-run as the evidence of that task only. Other
`_meta` keys (a progress
token, the protocol's reserved keys) are not ours and are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from pydantic import ValidationError

from shared_protocol.audit import (
    ENV_CHOICES,
    ENV_META_KEY,
    FRESH_ENV_META_KEY,
    MAX_TURN_TEXT,
    ORIGIN_META_KEY,
    TASK_META_KEY,
    TURN_META_KEY,
    ModelTurn,
)

UNREADABLE_META_KEY = "swarm/unreadable_meta"
"""Put by the server in place of a `_meta` that is not an object (the SDK would reject the whole request unseen):
its value says what was sent, and the call is refused and audited."""

Origin = Literal["model", "runner"]
EnvChoice = Literal["task", "check"]
ORIGINS: tuple[Origin, ...] = ("model", "runner")


@dataclass(kw_only=True, frozen=True)
class CallOrigin:
    """What a call's `_meta` says of it; `problem` names what is wrong with it (the call is then refused)."""

    origin: Origin | None = None
    turn: dict[str, Any] | None = None
    """A valid `ModelTurn` as JSON, its text cut to `MAX_TURN_TEXT`."""
    task_id: str | None = None
    """The task a runner's own call is for (`swarm/task`)."""
    problem: str | None = None
    env: EnvChoice | None = None
    """The env dirs the runner's own command runs with (`swarm/env`); None: none."""
    fresh_env: bool = False
    """The check's env dirs are emptied before the command (`swarm/fresh_env`)."""


MAX_TASK_ID = 200


NO_ORIGIN = CallOrigin()


def read_meta(meta: Mapping[str, Any] | None) -> CallOrigin:
    """The origin and turn in a request's `_meta`, or the problem with them (never raises)."""
    if not meta:
        return NO_ORIGIN
    if UNREADABLE_META_KEY in meta:
        return CallOrigin(problem=f"_meta must be an object, not {meta[UNREADABLE_META_KEY]}")
    env, problem = _env(meta)
    if problem is not None:
        return CallOrigin(problem=problem)
    if ORIGIN_META_KEY not in meta and TURN_META_KEY not in meta and TASK_META_KEY not in meta:
        return NO_ORIGIN if env is None else CallOrigin(env=env, fresh_env=meta.get(FRESH_ENV_META_KEY) is True)
    origin: Origin | None = None
    if ORIGIN_META_KEY in meta:
        raw = meta[ORIGIN_META_KEY]
        if raw not in ORIGINS:
            return CallOrigin(problem=f'_meta \'{ORIGIN_META_KEY}\' must be "model" or "runner", not {_shown(raw)}')
        origin = raw
    if env is not None and (origin == "model" or TURN_META_KEY in meta):
        return CallOrigin(problem=f"_meta '{ENV_META_KEY}' is for the runner's own commands, not a model's call")
    turn: dict[str, Any] | None = None
    if TURN_META_KEY in meta:
        raw_turn = meta[TURN_META_KEY]
        if not isinstance(raw_turn, dict):
            return CallOrigin(problem=f"_meta '{TURN_META_KEY}' must be an object, not {_shown(raw_turn)}")
        fields = dict(cast(dict[str, Any], raw_turn))
        text = fields.get("text")
        if isinstance(text, str) and len(text) > MAX_TURN_TEXT:
            fields["text"] = text[:MAX_TURN_TEXT] + f"… [{len(text) - MAX_TURN_TEXT} more characters]"
        if isinstance(fields.get("step"), bool):  # (JSON true is not a step number)
            return CallOrigin(problem=f"_meta '{TURN_META_KEY}.step' must be an integer")
        try:
            turn = ModelTurn.model_validate(fields, strict=True).model_dump(mode="json")
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'turn'}: {err['msg']}" for err in exc.errors()
            )
            return CallOrigin(problem=f"_meta '{TURN_META_KEY}' is not a model turn ({problems})")
    task_id: str | None = None
    if TASK_META_KEY in meta:
        raw_task = meta[TASK_META_KEY]
        if not isinstance(raw_task, str) or not raw_task or len(raw_task) > MAX_TASK_ID:
            return CallOrigin(
                problem=f"_meta '{TASK_META_KEY}' must be a task id (1 to {MAX_TASK_ID} characters), not "
                f"{_shown(raw_task)}"
            )
        if origin == "model" or turn is not None:
            return CallOrigin(problem=f"_meta '{TASK_META_KEY}' names the task of a runner's own call, not a model's")
        task_id = raw_task
    return CallOrigin(
        origin=origin,
        turn=turn,
        task_id=task_id,
        env=env,
        fresh_env=env is not None and meta.get(FRESH_ENV_META_KEY) is True,
    )


def _env(meta: Mapping[str, Any]) -> tuple[EnvChoice | None, str | None]:
    """The `swarm/env` choice and `swarm/fresh_env` flag, or the problem with them."""
    fresh = meta.get(FRESH_ENV_META_KEY)
    if FRESH_ENV_META_KEY in meta and not isinstance(fresh, bool):
        return None, f"_meta '{FRESH_ENV_META_KEY}' must be true or false, not {_shown(fresh)}"
    if ENV_META_KEY not in meta:
        return None, (f"_meta '{FRESH_ENV_META_KEY}' needs '{ENV_META_KEY}': \"check\"" if fresh else None)
    raw = meta[ENV_META_KEY]
    if raw not in ENV_CHOICES:
        return None, f'_meta \'{ENV_META_KEY}\' must be "task" or "check", not {_shown(raw)}'
    if fresh and raw != "check":
        return None, f"_meta '{FRESH_ENV_META_KEY}' empties the check's env dirs: it needs '{ENV_META_KEY}': \"check\""
    return raw, None


def flag_unreadable_meta(params: dict[str, Any]) -> None:
    """A `tools/call`'s params as received: a `_meta` that is not an object becomes one naming the problem, so that
    the call reaches the guard and is refused there, audited, rather than rejected by the SDK unseen."""
    meta = params.get("_meta")
    if meta is not None and not isinstance(meta, dict):
        params["_meta"] = {UNREADABLE_META_KEY: _shown(meta)}


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…"
