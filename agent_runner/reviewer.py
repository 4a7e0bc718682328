"""A reviewer agent at work: wait for decisions whose panel seat is its own, ask its model for a vote, cast it.

    reviewer = ReviewerRunner(profile=..., provider=..., brain=..., wallet=..., usage=...)
    code = await reviewer.run(once=True, wait_s=30)     # 0: a decision was reviewed; 3: none came

The reviewer holds the brain's event stream open with its reviewer token (every `decision` event, and the kill
switch): a `decision` event for a pending decision on whose panel its agent sits, which it has not voted on and did
not propose, queues it; the decisions pending when the stream (re)opens are queued too (so none made while it was
away is missed). There is no polling loop.

A review is one model call through the wallet, charged to the proposing task (`Decision.task_id`: the usage
records carry it; the brain keeps them under the proposing body). The model is shown the proposal (summary,
rationale, action, paths, cost, confidence; what the proposing agent wrote is quoted as JSON strings, so it cannot
forge a line of the brain's), the panel and the rules it votes under, and must answer with one JSON object and
nothing else:

    {"vote": "approve" | "deny" | "abstain", "rationale": "why, in a sentence or two"}

Anything else — prose, a fenced block, another key or one key twice, an empty rationale, a model error, a refused
budget — is an abstention whose rationale says what was wrong: a broken answer never approves. The vote is posted
with the agent's logic version (`POST /v1/decisions/{id}/votes`); the brain takes the voter from the token, and keeps
the vote of a logic version that does not vote live yet in shadow (recorded on the decision, not counted: the
brain's rollout of the agent, `swarm rollout status AGENT`); the runner says so.

The captain agent (`[[agents]] role = "captain"`, `captain=True`) runs the same way and also breaks deadlocks: a
decision the brain moved to its deadlock ladder's `captain_agent` step (a tie, or no quorum by the panel's deadline,
on a decision that needs no human: the brain's rule, `brain_server.governance`) comes to it as a `decision` event
like any other. It asks its model with the deadlock's context (the proposal, every vote and rationale so far, the
ladder's steps; `deadlock_prompt`, `CAPTAIN_INSTRUCTIONS`) and posts the answer as its vote on the same route: an
approve or deny settles the decision (the brain's `breaker`), an abstention leaves it to the ladder's next step (the
priority, a human captain, then denied). It never decides at any other step: the brain refuses it, and a decision
that needs a human never reaches that step. Its spend is charged to the proposing task, as a reviewer's is.

The kill switch holds the reviewer as it holds a worker: no model call starts while it is engaged, and one in
flight is cut off (the wallet settles it); the review is taken up again once released.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import anyio

from shared_protocol.brain import Decision, UsageAck, UsageBatch, VoteRequest
from shared_protocol.decisions import VoteValue

from .conversation import ModelRequest, UserMessage
from .exceptions import BudgetRefused, ProviderError, RunnerUserError
from .gate import KillGate
from .loop import AgentProfile
from .providers import Provider
from .runner import EXIT_NO_TASK, EXIT_WORKED, UsageQueue, _first  # pyright: ignore[reportPrivateUsage]
from .wallet import Wallet

VOTES: tuple[VoteValue, ...] = ("approve", "deny", "abstain")
MAX_RATIONALE = 2000
"""Characters of a rationale kept (the brain's vote reason takes at most 4000)."""
REVIEW_OUTPUT_TOKENS = 1024
"""What a review asks of the model at most (a vote and a short rationale), and so what the wallet reserves."""

INSTRUCTIONS = """You are a reviewer on a panel that approves or denies changes proposed by autonomous agents.
Judge the proposal below against your own policy (above, if any) and these rules: approve only a change that is
in scope, safe, worth its cost and whose paths are not sensitive (secrets, keys, CI, deployment, migrations,
swarm.toml); deny anything you cannot verify from what is shown; abstain only when you cannot judge at all.

Answer with exactly one JSON object and nothing else (no prose, no code fence):
{"vote": "approve" | "deny" | "abstain", "rationale": "<why, in one or two sentences>"}"""

CAPTAIN_INSTRUCTIONS = """You are the captain agent. The panel below could not settle this decision (a tie, or no
quorum in time): it is deadlocked, and your vote breaks the deadlock. Read the proposal and the panel's votes and
rationales, and judge it against your own policy (above, if any) and these rules: approve only a change that is in
scope, safe, worth its cost and whose paths are not sensitive (secrets, keys, CI, deployment, migrations,
swarm.toml); deny anything you cannot verify from what is shown. Approve or deny settles the decision at once;
abstain passes it on to a human captain (a decision nobody settles is denied at its deadline).

Answer with exactly one JSON object and nothing else (no prose, no code fence):
{"vote": "approve" | "deny" | "abstain", "rationale": "<why, in one or two sentences>"}"""


class ReviewBrain(Protocol):
    """The brain's routes a reviewer uses (`body_mcp.brain_client.BrainClient` is one)."""

    async def decisions(self, *, state: str | None = None) -> list[Decision]: ...
    async def get_decision(self, decision_id: str) -> Decision | None: ...
    async def vote(self, decision_id: str, request: VoteRequest) -> Decision: ...
    async def post_usage(self, batch: UsageBatch) -> UsageAck: ...
    def events(self, body_id: str, *, read_timeout_s: float) -> AsyncIterator[tuple[str, str]]: ...


def awaits(decision: Decision, agent: str) -> bool:
    """Whether `agent` has a review to give on `decision`: pending, its agent on the panel, not the proposer, and no
    vote of its own yet."""
    return (
        decision.state == "pending"
        and agent in decision.panel
        and decision.agent != agent
        and all(vote.voter != agent for vote in decision.votes)
    )


def _quoted(text: str) -> str:
    """The proposer's own text as one JSON string: its newlines and quotes escaped, so it cannot forge a line of the
    prompt (a second "Panel:" or "Impact:") that the model would take for the brain's."""
    return json.dumps(text, ensure_ascii=False)


def breaks(decision: Decision, agent: str) -> bool:
    """Whether `agent`, a captain agent, has a deadlock to break on `decision`: pending at the ladder's
    `captain_agent` step (the brain put it there, so a captain agent may decide it), not its own proposal, and no vote
    of its own since that step began. (Whether it may is the brain's rule; this only says what to look at.)"""
    if decision.state != "pending" or not decision.ladder or decision.agent == agent:
        return False
    step = decision.ladder[-1]
    return step.kind == "captain_agent" and all(v.voter != agent or v.at <= step.at for v in decision.votes)


_SHADOW = " [shadow: a new logic version's vote, kept and not counted; it replaces no earlier vote]"


def deadlock_prompt(decision: Decision) -> str:
    """What the captain agent is shown of a deadlocked decision: the proposal (`review_prompt`), every vote with its
    rationale so far, and the ladder's steps."""
    votes = "\n".join(
        f"  - {v.voter} ({v.role or 'rule reviewer'}): {v.value}{_SHADOW if v.shadow else ''}: "
        f"{_quoted(v.rationale[:500])}"
        for v in decision.votes
    )
    ladder = "\n".join(f"  - {step.kind}: {_quoted(step.reason)}" for step in decision.ladder)
    return (
        f"{review_prompt(decision)}\nVotes so far, oldest first (a later vote by the same voter replaces its "
        f"earlier one):\n{votes or '  (none)'}\nThe deadlock ladder so far:\n{ladder}"
    )


def review_prompt(decision: Decision) -> str:
    """What the model is shown of a decision: the proposal, its cost, the panel and the rules it is under. What the
    proposing agent wrote (summary, rationale, action, paths) is quoted; the rest is the brain's."""
    impact = decision.impact
    paths = "\n".join(f"  - {_quoted(path)}" for path in decision.files[:200]) or "  (none named: counts only)"
    more = f"\n  … and {len(decision.files) - 200} more" if len(decision.files) > 200 else ""
    return (
        f"Decision {decision.id}, proposed by agent {decision.agent}"
        + (f" for task {decision.task_id}" if decision.task_id else "")
        + f".\nThe proposing agent's own words are quoted (JSON strings).\nSummary: {_quoted(decision.summary)}\n"
        f"Rationale: {_quoted(decision.rationale)}\n"
        + (f"Action: {_quoted(decision.action)}\n" if decision.action else "")
        + f"Impact: {impact.files} files, {impact.api_calls} API calls, ${impact.usd:.2f}; "
        f"stated confidence {decision.confidence:.2f}.\nPaths it may change:\n{paths}{more}\n"
        f"Panel: {', '.join(decision.panel)} (quorum {decision.quorum}); needs: {decision.needs}; "
        f"rules {decision.rules_version}."
    )


class _KeyTwice(ValueError):
    """A JSON object naming a key twice (readers differ on which value wins)."""


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _KeyTwice(key)
        found[key] = value
    return found


def parse_vote(text: str) -> tuple[VoteValue, str]:
    """The model's answer as a vote and rationale; anything but the one JSON object asked for is an abstention
    whose rationale says what was wrong with the answer (a broken answer never approves)."""
    try:
        answer = json.loads(text.strip(), object_pairs_hook=_once_each)
    except _KeyTwice as twice:
        return "abstain", f"the model's answer gave the key {str(twice)[:50]!r} twice: it is not one clear vote"
    except (ValueError, RecursionError):  # (thousands of brackets overflow the decoder)
        return "abstain", f"the model's answer was not the JSON object asked for: {text.strip()[:200]!r}"
    if not isinstance(answer, dict):
        return "abstain", f"the model's answer was JSON but not an object: {text.strip()[:200]!r}"
    fields = cast(dict[str, Any], answer)
    extra = sorted(set(fields) - {"vote", "rationale"})
    if extra:
        return "abstain", f"the model's answer had keys besides vote and rationale: {', '.join(extra)[:200]}"
    vote, rationale = fields.get("vote"), fields.get("rationale")
    if vote not in VOTES:
        return "abstain", f"the model's vote {str(vote)[:50]!r} is not approve, deny or abstain"
    if not isinstance(rationale, str) or not rationale.strip():
        return "abstain", f"the model voted {vote} without a rationale"
    return vote, rationale.strip()[:MAX_RATIONALE]


@dataclass(kw_only=True)
class ReviewerRunner:
    profile: AgentProfile
    provider: Provider
    brain: ReviewBrain
    wallet: Wallet
    usage: UsageQueue | None = None
    """Where the wallet's records go (posted after each review, with no body id: the brain charges them to the
    proposing task's body)."""
    failsafe_s: float = 30.0
    captain: bool = False
    """The captain agent's runner: it also breaks the deadlocks that reach the ladder's `captain_agent` step."""
    say: Callable[[str], None] = lambda line: None
    gate: KillGate = field(default_factory=KillGate)
    reviewed: list[Decision] = field(default_factory=list[Decision])
    """The decisions as the brain returned them after each of this reviewer's votes."""
    _queue: dict[str, None] = field(default_factory=dict[str, None])
    _seen: set[str] = field(default_factory=set[str])
    """The reviews given (`_owed`'s keys): a decision's panel seat, and each deadlock step it broke or passed on."""
    _wake: anyio.Event = field(default_factory=anyio.Event)
    _connected: anyio.Event = field(default_factory=anyio.Event)
    _catch_up: bool = True

    async def run(self, *, once: bool = False, wait_s: float = 0.0) -> int:
        """Review decisions until cancelled (or, `once`, one decision: 0; none within `wait_s`: 3)."""
        code = EXIT_NO_TASK
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._listen)
                await self._connected.wait()
                try:
                    code = await self._loop(once=once, wait_s=wait_s)
                finally:
                    group.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # one failure of the reviewer's tasks: that one, as it was raised
            raise _first(group) from None
        return code

    async def _loop(self, *, once: bool, wait_s: float) -> int:
        deadline = time.monotonic() + wait_s
        while True:
            await self.gate.released()
            self._wake = anyio.Event()
            if self._catch_up:
                self._catch_up = False
                for decision in await self.brain.decisions(state="pending"):
                    self._offer(decision)
            if self._queue:
                decision_id = next(iter(self._queue))
                if await self.review(decision_id) and once:
                    return EXIT_WORKED
                continue
            if once and time.monotonic() >= deadline:
                return EXIT_NO_TASK
            with anyio.move_on_after(max(deadline - time.monotonic(), 0.0) if once else None):
                await self._wake.wait()

    def _owed(self, decision: Decision) -> str | None:
        """The review this runner owes `decision`, as a key for `_seen` (None: none, or given already): a deadlock
        to break (the captain agent) or its panel seat's vote."""
        agent = self.profile.name
        if self.captain and breaks(decision, agent):
            key = f"{decision.id}@captain_agent@{decision.ladder[-1].at.isoformat()}"
        elif awaits(decision, agent):
            key = decision.id
        else:
            return None
        return None if key in self._seen else key

    def _offer(self, decision: Decision) -> None:
        if self._owed(decision) is not None:
            self._queue[decision.id] = None
            self._wake.set()

    async def review(self, decision_id: str) -> bool:
        """Review one queued decision and vote (True), unless it no longer awaits this reviewer (False). A kill
        while the model answers leaves it queued: it is reviewed again once released."""
        decision = await self.brain.get_decision(decision_id)
        key = None if decision is None else self._owed(decision)
        if decision is None or key is None:
            self._queue.pop(decision_id, None)
            return False
        breaking = key != decision.id
        if breaking:
            self.say(f"decision {decision.id}: deadlocked at the captain agent's step; deciding it")
            value, rationale = await self._ask(decision, deadlock_prompt(decision), CAPTAIN_INSTRUCTIONS)
        else:
            value, rationale = await self._ask(decision, review_prompt(decision), INSTRUCTIONS)
        if value is None:
            return False  # cut off by the kill switch: still queued
        self._queue.pop(decision_id, None)
        self._seen.add(key)
        await self._post_usage()
        try:
            voted = await self.brain.vote(
                decision_id, VoteRequest(value=value, reason=rationale, logic_version=self.profile.logic_version)
            )
        except Exception as exc:
            if not _is_refusal(exc):
                raise
            self.say(f"decision {decision_id}: the brain refused the vote ({exc})")
            return False
        self.reviewed.append(voted)
        mine = [v for v in voted.votes if v.agent == self.profile.name]
        shadow = (
            " in shadow (kept, not counted: this logic version does not vote live yet)"
            if mine and mine[-1].shadow
            else ""
        )
        self.say(f"decision {decision_id}: voted {value}{shadow} ({rationale[:200]}); it is {voted.state}")
        return True

    async def _ask(self, decision: Decision, prompt: str, instructions: str) -> tuple[VoteValue | None, str]:
        """The model's vote on `decision`, shown `prompt` under `instructions` (None: the kill switch cut the call
        off)."""
        system = f"{self.profile.system_prompt}\n\n{instructions}" if self.profile.system_prompt else instructions
        request = ModelRequest(
            system=system,
            messages=[UserMessage(content=prompt)],
            max_output_tokens=min(self.profile.max_output_tokens, REVIEW_OUTPUT_TOKENS),
        )
        spending = self.wallet.task(decision.task_id or "")
        self.say(f"decision {decision.id}: reviewing ({decision.summary[:120]})")
        with self.gate.watch() as scope:
            try:
                turn = await spending.complete(self.provider, request)
            except ProviderError as exc:
                return "abstain", f"the review failed, so no judgement: {exc.message[:300]}"
            except BudgetRefused as exc:
                return "abstain", f"the review was not paid for, so no judgement: {str(exc)[:300]}"
        if scope.cancelled_caught:
            self.say(f"decision {decision.id}: the kill switch cut the review off; it is taken up again once released")
            return None, ""
        return parse_vote(turn.content)

    async def _post_usage(self) -> None:
        if self.usage is None:
            return
        try:
            await self.usage.flush()
        except Exception as exc:  # noqa: BLE001 - kept, posted after the next review
            self.say(f"usage not posted yet ({exc})")

    # -- the brain's events ----------------------------------------------------------------------

    async def _listen(self) -> None:
        lost_at: float | None = None
        while True:
            try:
                async for name, data in self.brain.events("", read_timeout_s=max(self.failsafe_s, 5.0)):
                    if lost_at is not None or not self._connected.is_set():
                        self._catch_up = True  # (re)connected: what was made meanwhile is queued too
                        self._wake.set()
                    lost_at = None
                    self.gate.release("failsafe")
                    self._on_event(name, data)
                    self._connected.set()
            except Exception as exc:  # noqa: BLE001 - the stream ended (reconnect) or was refused (say why)
                if _is_refusal(exc) and getattr(exc, "status", None) not in (408, 429):
                    raise RunnerUserError(
                        f"the brain refused agent {self.profile.name}'s event stream ({exc}): a reviewer runs with "
                        f"its reviewer token (swarm brain token create --role reviewer --agent {self.profile.name})"
                    ) from None
            now = time.monotonic()
            lost_at = now if lost_at is None else lost_at
            if now - lost_at >= self.failsafe_s:
                self.gate.engage("failsafe", f"the brain has been out of reach for {now - lost_at:.0f} s")
                self._connected.set()
            await anyio.sleep(0.5)

    def _on_event(self, name: str, data: str) -> None:
        if name == "kill":
            self.gate.engage("brain", _reason(data) or "kill switch engaged")
            self.say(f"kill switch engaged: {_reason(data)}")
        elif name == "resume":
            self.gate.release("brain")
            self._wake.set()
        elif name == "decision":
            try:
                decision = Decision.model_validate_json(data)
            except ValueError:
                return
            self._offer(decision)


def _reason(data: str) -> str:
    try:
        value = json.loads(data).get("reason")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def _is_refusal(exc: Exception) -> bool:
    status = getattr(exc, "status", None)
    return isinstance(status, int) and 400 <= status < 500


__all__ = [
    "CAPTAIN_INSTRUCTIONS",
    "INSTRUCTIONS",
    "ReviewBrain",
    "ReviewerRunner",
    "awaits",
    "breaks",
    "deadlock_prompt",
    "parse_vote",
    "review_prompt",
]
