"""The one place that decides whether an action needs approval, and checks the decision that grants it.

The same rules hold an action's *planned* impact (before it runs: the approval guard) and
its *measured* impact (known only while it runs: a command's staged diff, a directory
moved): an impact that needs a human or consensus (PRODUCT.md, "Approval rules") must name
a decision that was approved for at least that impact. Irreversible actions need a human's
approval too when `[policy] approve_irreversible` says so.

Splitting work does not slip past the threshold: it also holds for the distinct files one
body session changed within `[policy] cumulative_window_s` (10 minutes), this action's
included. (The blast radius stays per action.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from shared_protocol import Impact
from shared_protocol.decisions import DEADLINE, RULES, ApprovalThresholds, Needs, classify, covers
from shared_protocol.refusals import ApprovalAsk

from .decisions import DecisionStore
from .exceptions import ApprovalRequired

_ASK_FILES = 200
"""An approval refusal names at most this many files (its count says how many there are)."""

Session = str
"""A body session: every client of one body process shares its count (a client chooses its own name)."""


class ApprovalGate:
    def __init__(
        self,
        decisions: DecisionStore,
        rules: ApprovalThresholds,
        *,
        approve_irreversible: bool,
        cumulative_window_s: float = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._decisions = decisions
        self._rules = rules
        self._approve_irreversible = approve_irreversible
        self._window_s = cumulative_window_s
        self._clock = clock
        self._changed: dict[Session, dict[str, float]] = {}
        """Per session, each file it changed within the window, and when."""
        self._used: set[str] = set()
        """Decisions an action was carried out under: an approval is for one action (this body process's memory)."""

    def _recent(self, session: Session) -> dict[str, float]:
        changed = self._changed.get(session)
        if not changed:
            return {}
        cutoff = self._clock() - self._window_s
        if any(at < cutoff for at in changed.values()):
            changed = {path: at for path, at in changed.items() if at >= cutoff}
            self._changed[session] = changed
        return changed

    async def check(
        self, decision_id: str | None, impact: Impact, *, session: Session | None = None, paths: Iterable[str] = ()
    ) -> bool:
        """Refuse an impact that needs a human or consensus unless `decision_id` grants it; with `session`, the
        files it changed recently count together with `paths`, this action's. True when a decision granted it."""
        needs = classify(impact, 1.0, self._rules)
        mine = set(paths)
        if needs == "none" and mine and session is not None and self._window_s > 0:
            everything = self._recent(session).keys() | mine
            together = len(everything)
            if together >= self._rules.consensus_files:
                files = max(together, impact.files)
                why = (
                    f"this session changed {files} distinct files within {self._window_s / 60:g} minutes, "
                    "this action's included"
                )
                cumulative = impact.model_copy(update={"files": files})
                await self.require(decision_id, cumulative, "consensus", why=why, paths=everything)
                return True
        if needs == "human" or needs == "consensus":
            await self.require(decision_id, impact, needs, paths=mine)
            return True
        return False

    def changed(
        self, session: Session, paths: Iterable[str], *, approved: bool, decision_id: str | None = None
    ) -> None:
        """Note files an action of `session` changed (counted ones, not artifacts). An approved action's files,
        and those before it, were reviewed: the session's count starts again, and its decision is used up."""
        if approved and decision_id is not None:
            self._used.add(decision_id)
        if self._window_s <= 0:
            return
        if approved:
            self._changed.pop(session, None)
            return
        now = self._clock()
        recent = self._changed.setdefault(session, {})
        for path in paths:
            recent[path] = now

    async def check_irreversible(self, decision_id: str | None, impact: Impact, reason: str) -> None:
        """An action undo cannot take back needs a human's approval, when the policy says so."""
        if self._approve_irreversible:
            await self.require(decision_id, impact, "human", why=f"it is irreversible ({reason})", human_only=True)

    async def require(
        self,
        decision_id: str | None,
        impact: Impact,
        needs: Needs,
        *,
        why: str | None = None,
        human_only: bool = False,
        paths: Iterable[str] = (),
    ) -> None:
        """Refuse unless `decision_id` names a decision approved for at least `impact` (the guard's last word)."""
        how = "a human approval" if needs == "human" else "consensus (a human approval until voting exists)"
        reason = why or f"it measures {impact.files} files, {impact.api_calls} API calls, ${impact.usd:.2f}"
        ask = (
            f"this action needs {how} because {reason}. "
            "Call request_approval describing it, then retry with its decision_id once approved"
        )
        wanted = ApprovalAsk(
            needs="human" if needs == "human" else "consensus",
            files=sorted(paths)[:_ASK_FILES],
            file_count=impact.files,
            api_calls=impact.api_calls,
            usd=impact.usd,
            irreversible=human_only,
        )
        if decision_id is None:
            raise ApprovalRequired(ask, ask=wanted)
        decision = await self._decisions.get(decision_id)
        if decision is None:
            raise ApprovalRequired(f"decision '{decision_id}' does not exist; {ask}", ask=wanted)
        if decision.state != "approved":
            raise ApprovalRequired(f"decision {decision_id} is {decision.state}, not approved; {ask}", ask=wanted)
        if decision_id in self._used:
            raise ApprovalRequired(f"decision {decision_id} was used by an earlier action already; {ask}", ask=wanted)
        if decision.files and (outside := sorted(p for p in paths if not _named(p, decision.files))):
            raise ApprovalRequired(
                f"decision {decision_id} was approved for other files than {', '.join(outside[:10])}; {ask}",
                ask=wanted,
            )
        if human_only and not any(a.verdict == "approved" and a.by not in (RULES, DEADLINE) for a in decision.answers):
            raise ApprovalRequired(
                f"decision {decision_id} was approved by the rules, not by a human; {ask} (pass irreversible=true)",
                ask=wanted,
            )
        if not covers(decision.impact, impact):
            d = decision.impact
            raise ApprovalRequired(
                f"decision {decision_id} was approved for {d.files} files, {d.api_calls} API calls, ${d.usd:.2f}, "
                f"less than this action: {ask}",
                ask=wanted,
            )


def _named(path: str, approved: list[str]) -> bool:
    """Whether `path` is one of the approved paths, or below an approved directory."""
    return any(path == a or path.startswith(a.rstrip("/") + "/") for a in approved)
