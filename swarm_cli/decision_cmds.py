"""`swarm decisions list [--pending] [--json]` (the inbox: each decision ends with the commands that answer it, `answer
with:` lines; `answer_with` in JSON), `swarm decisions list --task ID [--json]` (the task's competing decisions
ranked: approval voting for the acceptable ones, a Borda count over ballots derived from the votes, the tie-break)
and `swarm vote ID approve|deny|abstain --reason TEXT [--logic-version LV]` (a reviewer token's vote names its agent's
logic version; one not live yet is kept in shadow, shown `[shadow: not counted]`).

They act on the brain `--brain URL` (or `$SWARM_BRAIN_URL`) names, with `--token` (or `$SWARM_TOKEN`): a human's
approver or captain token, or an agent's reviewer token. The voter is whoever the token is: never a flag.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Protocol, get_args

from pydantic import ValidationError

from body_mcp import UserError
from body_mcp.explain import printable
from shared_protocol.brain import Decision, TaskProposals, VoteRequest, VoteValue

from . import _context


class _Subparsers(Protocol):
    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def _out(line: str = "") -> None:
    print(line, flush=True)


def explain(decision: Decision) -> list[str]:
    """A decision as the inbox shows it: what, its impact, files and confidence, where it stands, and the votes."""
    impact = decision.impact
    lines = [
        f"{decision.id}  {decision.state}  needs {decision.needs}  by {decision.agent} on {decision.body_id}",
        f"  summary:    {decision.summary}",
        f"  why:        {decision.rationale}",
        f"  impact:     {impact.files} files, {impact.api_calls} API calls, ${impact.usd:.2f}; "
        f"confidence {decision.confidence:.2f}",
        f"  files:      {', '.join(decision.files) if decision.files else '(not named)'}",
        f"  deadline:   {decision.deadline.isoformat(timespec='seconds')}",
    ]
    if decision.panel:
        human = " + a human" if decision.human_required else ""
        lines.append(f"  panel:      {decision.quorum} of {', '.join(decision.panel)}{human}")
    for vote in decision.votes:
        who = vote.voter + (f" ({vote.logic_version})" if vote.agent and vote.logic_version else "")
        shadow = " [shadow: not counted]" if vote.shadow else ""
        lines.append(f"  vote:       {who}: {vote.value}{shadow} — {vote.rationale}")
    for step in decision.ladder:
        lines.append(f"  ladder:     {step.kind}: {step.reason}")
    for answer in decision.answers:
        lines.append(f"  answer:     {answer.verdict} by {answer.by}: {answer.reason}")
    return lines


def how_to_answer(decision: Decision) -> list[str]:
    """The commands that answer `decision` as it stands, each with whose token it takes (none once it is final,
    except a human captain's veto of an approved one)."""
    i = decision.id
    veto = f"swarm override {i} --veto --reason …   (a human captain, or the captain agent's reviewer token)"
    if decision.state == "approved":
        return [veto + ": reverses the approval"]
    if decision.state != "pending":
        return []
    lines: list[str] = []
    at = decision.ladder[-1].kind if decision.ladder else None
    if at == "human_captain":
        lines.append(f"swarm approve {i} --reason …   (a human captain's token: breaks the deadlock)")
        lines.append(f"swarm deny {i} --reason …      (any human's: denies it)")
    elif decision.panel:
        voted = {v.voter for v in decision.votes if not v.shadow}
        open_seats = [seat for seat in decision.panel if seat not in voted]
        seats = ", ".join(open_seats) if open_seats else "every seat voted; a seat may change its vote"
        lines.append(
            f"swarm vote {i} approve|deny|abstain --reason … --logic-version LV   (a reviewer token with a seat: "
            f"{seats})"
        )
        if at == "captain_agent":
            lines.append(f"swarm vote {i} approve|deny --reason …   (the captain agent's reviewer token: breaks it)")
        if decision.human_required:
            lines.append(f"swarm approve {i} --reason …   (a human's approver or captain token: also required)")
        lines.append(f"swarm deny {i} --reason …      (a human's approver or captain token: denies it)")
    else:
        lines.append(f"swarm approve {i} --reason … | swarm deny {i} --reason …   (an approver's or captain's token)")
    lines.append(veto)
    lines.append(f"swarm override {i} --force --reason …   (a human captain only: approves it, whatever the votes)")
    return lines


def ranked(proposals: TaskProposals) -> list[str]:
    """A task's competing decisions as `swarm decisions list --task` shows them, best first."""
    lines = [
        f"task {proposals.task_id}: {len(proposals.proposals)} proposals, {proposals.voters} voters, "
        f"acceptable at {proposals.quorum} approvals",
        f"  ballots:    {proposals.ballots}",
        f"  tie-break:  {proposals.tie_break}",
    ]
    if not proposals.proposals:
        lines.append("  no decisions for this task")
    for p in proposals.proposals:
        verdict = "acceptable" if p.acceptable else "not acceptable"
        lines.append(
            f"  #{p.rank}  {p.decision_id}  borda {p.borda:g}  {p.approvals} approvals  {verdict}  {p.state}  "
            f"by {p.agent}: {p.summary}"
        )
    lines.append(f"  winner:     {proposals.winner or 'none (no proposal is acceptable)'}")
    return lines


def cmd_list(args: argparse.Namespace) -> int:
    if args.task is not None:
        if args.pending:
            raise UserError("--task ranks all the task's decisions: it does not take --pending")
        proposals = _context.on_brain(args, command=args.command, call=lambda client: client.task_proposals(args.task))
        if args.json:
            _out(proposals.model_dump_json(indent=2))
            return 0
        for line in ranked(proposals):
            _out(printable(line))  # (an agent's summary cannot forge a line or send escapes)
        return 0
    found = _context.on_brain(
        args, command=args.command, call=lambda client: client.decisions(state="pending" if args.pending else None)
    )
    if args.json:
        listed = [{**d.model_dump(mode="json"), "answer_with": how_to_answer(d)} for d in found]
        _out(json.dumps(listed, indent=2))
        return 0
    if not found:
        _out("no pending decisions" if args.pending else "no decisions")
    for decision in found:
        for line in explain(decision):
            _out(printable(line))  # (an agent's summary cannot forge a line or send escapes)
        for line in how_to_answer(decision):
            _out(printable(f"  answer with: {line}"))
    return 0


def cmd_vote(args: argparse.Namespace) -> int:
    version = (args.logic_version or "").strip() or None
    try:
        request = VoteRequest(value=args.value, reason=args.reason, logic_version=version)
    except ValidationError as error:
        if any(e["loc"] and e["loc"][0] == "logic_version" for e in error.errors()):
            raise UserError("--logic-version is at most 200 characters: the agent's logic version") from None
        raise UserError("--reason must not be empty: a vote says why") from None
    decision = _context.on_brain(args, command=args.command, call=lambda client: client.vote(args.id, request))
    mine = [v for v in decision.votes if v.logic_version == version and v.agent is not None] if version else []
    shadow = " (in shadow: kept, not counted; see swarm rollout status)" if mine and mine[-1].shadow else ""
    _out(printable(f"voted {args.value} on {decision.id}{shadow}: it is {decision.state} ({decision.summary})"))
    return 0


def add_parsers(sub: _Subparsers) -> None:
    """Register `swarm decisions list` and `swarm vote` on the `swarm` subcommands."""
    decisions = sub.add_parser("decisions", help="the brain's decisions", description="the brain's decisions")
    decisions_sub = decisions.add_subparsers(dest="decisions_command", required=True, metavar="SUBCOMMAND")
    p = decisions_sub.add_parser("list", help="decisions with their explanation and votes (--pending: the inbox)")
    p.set_defaults(func=cmd_list)
    p.add_argument("--pending", action="store_true", help="only pending ones, most valuable task first")
    p.add_argument("--json", action="store_true", help="the decisions as a JSON list")
    p.add_argument(
        "--task",
        metavar="ID",
        help="the task's competing decisions ranked: approval voting, Borda count, the tie-break",
    )
    _context.brain_options(p, token_of="a reviewer's, approver's or captain's")

    p = sub.add_parser("vote", help="vote on a pending decision (the voter is the token's)")
    p.set_defaults(func=cmd_vote)
    p.add_argument("id", help="the decision id")
    p.add_argument("value", choices=list(get_args(VoteValue)), help="approve, deny or abstain")
    p.add_argument("--reason", required=True, help="why (recorded with the vote)")
    p.add_argument(
        "--logic-version",
        metavar="LV",
        help="a reviewer token's vote: the agent's logic version (a version not live yet votes in shadow)",
    )
    _context.brain_options(p, token_of="a reviewer's, approver's or captain's")
