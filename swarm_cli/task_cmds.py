"""`swarm task add|list|show|cancel`: the brain's task queue, for the humans who fill it (approver or captain token).

Like `swarm approve`, they act on the brain `--brain URL` (or `$SWARM_BRAIN_URL`) names, with `--token` (or
`$SWARM_TOKEN`). A task's `--repo` is a directory on the agents' host: the brain cannot see it, so it is checked
here, where the command runs (on that host).
"""

from __future__ import annotations

import argparse
import json
import shlex
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, get_args

from pydantic import ValidationError

from body_mcp import UserError
from body_mcp.explain import printable
from shared_protocol.brain import Task, TaskRequest, TaskState, check_acceptance_input, check_setup

from . import _context


class _Subparsers(Protocol):
    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def _out(line: str = "") -> None:
    print(line, flush=True)


def _repo(raw: str) -> str:
    """`--repo` as an absolute directory that exists here, or a `UserError` saying what is wrong with it."""
    path = Path(raw).expanduser()
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        raise UserError(f"--repo {raw}: no such directory") from None
    except OSError as exc:
        raise UserError(f"--repo {raw}: {exc.strerror or exc}") from None
    if not resolved.is_dir():
        raise UserError(f"--repo {raw}: not a directory")
    return str(resolved)


def _setup(raw: str) -> str:
    """`--setup` as one command line that splits into arguments, or a `UserError` saying what is wrong with it."""
    try:
        setup = check_setup(raw)
        shlex.split(setup)
    except ValueError as exc:
        raise UserError(f"--setup: {exc}") from None
    return setup


def _when(at: datetime | None) -> str:
    return "-" if at is None else at.isoformat(timespec="seconds")


def cmd_add(args: argparse.Namespace) -> int:
    if args.value_usd < 0:
        raise UserError(f"--value-usd must be 0 or more (got {args.value_usd:g})")
    if not args.title.strip():
        raise UserError("--title must not be empty")
    inputs: list[str] | None = args.acceptance_input
    if args.no_acceptance_inputs:
        if inputs:
            raise UserError("give --acceptance-input GLOB or --no-acceptance-inputs, not both")
        inputs = []
    if inputs and not args.acceptance:
        raise UserError("--acceptance-input names the files an acceptance command reads: give --acceptance too")
    for pattern in inputs or []:
        try:
            check_acceptance_input(pattern)
        except ValueError as exc:
            raise UserError(f"--acceptance-input: {exc}") from None
    setup = _setup(args.setup)
    try:
        request = TaskRequest(
            title=args.title,
            description=args.description,
            value_usd=args.value_usd,
            acceptance=args.acceptance,
            repo=_repo(args.repo) if args.repo else "",
            acceptance_inputs=inputs,
            setup=setup,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UserError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None
    task = _context.on_brain(args, command="task", call=lambda client: client.create_task(request))
    _out(f"queued: {task.title} (value ${task.value_usd:g})")
    if task.acceptance:
        _out(f"acceptance: {task.acceptance}")
    if task.repo:
        _out(f"repo: {task.repo}")
    if task.setup:
        _out(f"setup: {task.setup}")
    if task.acceptance_inputs is not None:
        _out(f"acceptance inputs: {', '.join(task.acceptance_inputs) or '(none: the model may change them)'}")
    _out(task.id)
    return 0


def _summary_line(task: Task) -> str:
    holder = task.claimed_by
    by = f" [{holder.agent}]" if holder is not None else ""
    verified = " verified" if task.verified else ""
    return f"{task.id}  {task.state}{verified}{by}  ${task.value_usd:g}  {task.title}"


def cmd_list(args: argparse.Namespace) -> int:
    tasks = _context.on_brain(
        args, command="task", call=lambda client: client.tasks(state=args.state, agent=args.agent)
    )
    if args.json:
        _out(json.dumps([t.model_dump(mode="json") for t in tasks], indent=2))
        return 0
    if not tasks:
        _out("no tasks" + (f" {args.state}" if args.state else ""))
    for task in tasks:
        _out(printable(_summary_line(task)))
    return 0


def describe(task: Task) -> list[str]:
    """`task` as `swarm task show` prints it: what, where, who holds it, how it ended, and its history."""
    lines = [
        f"task:         {task.id}",
        f"title:        {task.title}",
        f"state:        {task.state}"
        + (f" (waiting for decision {task.parked_decision_id})" if task.parked_decision_id else ""),
        f"value:        ${task.value_usd:g}",
        f"created:      {_when(task.created_at)} by {task.created_by}",
        f"acceptance:   {task.acceptance or '(none: success is self-reported)'}",
        "inputs:       "
        + (
            "(default: the files the acceptance command names, and the tests)"
            if task.acceptance_inputs is None
            else ", ".join(task.acceptance_inputs) or "(none: the model may change them)"
        ),
        f"setup:        {task.setup or '(none)'}",
        f"repo:         {task.repo or '(none)'}",
        f"attempts:     {task.attempts}",
    ]
    if task.description:
        lines.append(f"description:  {task.description}")
    holder = task.claimed_by
    if holder is not None:
        mode = f", {task.claim_mode}" if task.claim_mode else ""
        version = f", {task.logic_version}" if task.logic_version else ""
        lease = f", lease until {_when(task.lease_expires)}" if task.lease_expires else ""
        lines.append(f"claimed by:   {holder.agent} on body {holder.body_id}{mode}{version}{lease}")
    if task.finished_at is not None:
        lines.append(
            f"finished:     {_when(task.finished_at)}" + (f": {task.outcome_summary}" if task.outcome_summary else "")
        )
    check = task.verification
    if check is not None:
        exit_code = "-" if check.exit_code is None else str(check.exit_code)
        lines.append(
            f"verification: {'VERIFIED' if task.verified else 'not verified'} — `{check.command}` exited {exit_code}"
            + (f" (audit {check.action_id})" if check.action_id else "")
        )
        if check.status is not None:
            lines.append(f"              {check.status}: {check.detail}")
    elif task.state == "succeeded":
        lines.append("verification: none (self-reported)")
    if task.evidence:
        lines.append("evidence:")
        lines += [f"  {key}: {value}" for key, value in sorted(task.evidence.items())]
    spend = task.spend
    if spend is not None:
        lines.append(
            f"spend:        ${spend.usd:.4f}, {spend.steps} steps, {spend.input_tokens} in / {spend.output_tokens} out"
            f" / {spend.cache_read_tokens} cached tokens" + (f", {spend.model}" if spend.model else "")
        )
    if task.shadow_runs:
        lines.append("shadow runs:")
        for run in task.shadow_runs:
            verified = " verified" if run.verification is not None and run.verification.verified else ""
            cost = f", ${run.spend.usd:.4f}" if run.spend is not None else ""
            lines.append(
                f"  {_when(run.at)} {run.agent} {run.logic_version}: {run.outcome}{verified}{cost}"
                + (f" — {run.summary}" if run.summary else "")
            )
    lines.append("history:")
    for event in task.history:
        who = (
            f" [{event.agent}" + (f" {event.logic_version}" if event.logic_version else "") + "]" if event.agent else ""
        )
        detail = ", ".join(f"{key}={value}" for key, value in event.detail.items() if value not in (None, ""))
        lines.append(f"  {_when(event.at)} {event.kind} by {event.by}{who}" + (f": {detail}" if detail else ""))
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    task = _context.on_brain(args, command="task", call=lambda client: client.task(args.id))
    if args.json:
        _out(task.model_dump_json(indent=2))
        return 0
    for line in describe(task):
        _out(printable(line))  # (an agent's summary or evidence cannot forge a line or send escapes)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    task = _context.on_brain(args, command="task", call=lambda client: client.cancel_task(args.id, args.reason))
    _out(printable(f"task {task.id} is cancelled: {task.title} ({args.reason})"))
    return 0


def add_parsers(sub: _Subparsers) -> None:
    """Register `swarm task add|list|show|cancel` on the `swarm` subcommands."""
    task = sub.add_parser("task", help="the brain's task queue", description="the brain's task queue")
    task_sub = task.add_subparsers(dest="task_command", required=True, metavar="SUBCOMMAND")

    p = task_sub.add_parser("add", help="queue a task (prints its id as the last line)")
    p.set_defaults(func=cmd_add)
    p.add_argument("--title", required=True, help="what to do, in a line")
    p.add_argument("--description", default="", help="more detail for the agent")
    p.add_argument("--acceptance", default="", help="the command that decides success (e.g. 'pytest -q')")
    p.add_argument(
        "--setup",
        default="",
        metavar="CMD",
        help="the command that builds the task's environment (e.g. 'uv sync'): run by the runner at the start of the "
        "task and again, into fresh env dirs, before the acceptance re-run",
    )
    p.add_argument("--value-usd", type=float, default=0.0, help="estimated value; higher is claimed first")
    p.add_argument("--repo", metavar="DIR", help="the repository the task works in (a directory on this host)")
    p.add_argument(
        "--acceptance-input",
        action="append",
        metavar="GLOB",
        help="a file the acceptance command reads, which the agent's model may not change (repeatable; globs from "
        "the repository root, `**` any directories; default: the files the command names, and the tests)",
    )
    p.add_argument(
        "--no-acceptance-inputs",
        action="store_true",
        help="let the model change every file, the acceptance command's inputs included",
    )
    _context.brain_options(p, token_of="an approver's or captain's")

    p = task_sub.add_parser("list", help="the tasks, oldest first")
    p.set_defaults(func=cmd_list)
    p.add_argument("--state", choices=list(get_args(TaskState)), help="only tasks in this state")
    p.add_argument("--agent", help="only tasks claimed (now or last) by this agent")
    p.add_argument("--json", action="store_true", help="the tasks as JSON")
    _context.brain_options(p, token_of="an approver's or captain's")

    p = task_sub.add_parser("show", help="one task: its history, verification, evidence and spend")
    p.set_defaults(func=cmd_show)
    p.add_argument("id", help="the task id")
    p.add_argument("--json", action="store_true", help="the task as JSON")
    _context.brain_options(p, token_of="an approver's or captain's")

    p = task_sub.add_parser("cancel", help="cancel a task not finished (its agent is told to stop)")
    p.set_defaults(func=cmd_cancel)
    p.add_argument("id", help="the task id")
    p.add_argument("--reason", default="cancelled from the command line", help="why (recorded by the brain)")
    _context.brain_options(p, token_of="an approver's or captain's")
