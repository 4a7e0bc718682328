"""The one place that decides whether an action needs approval, and checks the decision that grants it.

The same rules hold an action's *planned* impact (before it runs: the approval guard) and
its *measured* impact (known only while it runs: a command's staged diff, a directory
moved): an impact that needs a human or consensus (PRODUCT.md, "Approval rules") must name
a decision that was approved for at least that impact. Irreversible actions need a human's
approval too when `[policy] approve_irreversible` says so.

A decision grants one action: the first action carried out under it uses it up, for this
body identity for good. The use is claimed in `state.db` before the action runs (one write
transaction, so of two processes of the same body racing with one decision, exactly one
gets it), kept once the action is carried out, and given back when it is refused or only
shadowed; a call that fails or is cancelled part way keeps it (it may have changed files).

Splitting work does not slip past the threshold: it also holds for the distinct files this
body identity changed within `[policy] cumulative_window_s` (10 minutes), this action's
included, whichever of its processes or clients changed them and across restarts (they are
in `state.db`, dated on the wall clock, written with each call's audit event). An action's
files count from the moment they are checked (noted in the same transaction as the count,
marked with its action id, and taken back if it is refused or only shadowed), so body
processes acting at the same moment each count the others'. An approved
action's files, and those before it, were reviewed: the count starts again after it. (The
blast radius stays per action.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import anyio

from shared_protocol import Impact
from shared_protocol.decisions import DEADLINE, RULES, ApprovalThresholds, Needs, classify, covers
from shared_protocol.refusals import ApprovalAsk

from ._db import StateDB, Writes
from .decisions import DecisionStore
from .exceptions import ApprovalRequired

_ASK_FILES = 200
"""An approval refusal names at most this many files (its count says how many there are)."""


class ApprovalGate:
    def __init__(
        self,
        decisions: DecisionStore,
        rules: ApprovalThresholds,
        db: StateDB,
        *,
        approve_irreversible: bool,
        cumulative_window_s: float = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`db` keeps what outlives a process: the decisions used up, and the files changed within the window
        (dated with `clock`, the wall clock: the dates must mean the same to the next process)."""
        self._decisions = decisions
        self._rules = rules
        self._db = db
        self._approve_irreversible = approve_irreversible
        self._window_s = cumulative_window_s
        self._clock = clock
        self._claims: dict[str, str] = {}
        """Decision each running action of this process claimed (by action id), until the action ends."""
        self._noting: dict[str, tuple[list[str], float]] = {}
        """Running actions of this process whose files are noted as theirs in `recent_changes` (`_count_in`): the
        files, and when."""

    def _recent(self) -> set[str]:
        """The files changed within the window (by any process of this body identity)."""
        cutoff = self._clock() - self._window_s
        with self._db.read() as conn:
            return {path for (path,) in conn.execute("SELECT path FROM recent_changes WHERE at >= ?", (cutoff,))}

    async def check(
        self, decision_id: str | None, impact: Impact, *, action_id: str, paths: Iterable[str] = ()
    ) -> bool:
        """Refuse an impact that needs a human or consensus unless `decision_id` grants it; the files changed
        recently count together with `paths`, this action's. True when a decision granted it (and the action
        `action_id` holds it from then on: `settle` says what became of the action)."""
        needs = classify(impact, 1.0, self._rules)
        mine = set(paths)
        if needs == "none" and mine and self._window_s > 0:
            everything = self._counted_already(mine)
            if everything is None:
                # In a worker thread: the write transaction waits for the database's lock, which the audit writer
                # holds across the commit an earlier reply asked for; the event loop meanwhile hears a kill, which
                # the last check before the call runs then obeys.
                everything = await anyio.to_thread.run_sync(self._count_in, mine, action_id)
            together = len(everything)
            if together >= self._rules.consensus_files:
                files = max(together, impact.files)
                minutes = f"{self._window_s / 60:g}"
                why = f"{files} distinct files were changed within {minutes} minutes, this action's included"
                cumulative = impact.model_copy(update={"files": files})
                await self.require(decision_id, cumulative, "consensus", action_id=action_id, why=why, paths=everything)
                return True
        if needs == "human" or needs == "consensus":
            await self.require(decision_id, impact, needs, action_id=action_id, paths=mine)
            return True
        return False

    def _counted_already(self, mine: set[str]) -> set[str] | None:
        """The files changed within the window, when `mine` are all among them already (an agent changing again
        what it changed minutes ago): read on the event loop's thread, never waiting (`StateDB.read_now`), no write
        transaction and no worker thread. None when a file of `mine` is not noted yet (or the read would wait):
        `_count_in` notes it, counting in the same transaction.

        The same count as `_count_in`'s: that would note nothing either (a noted file keeps the date it was noted
        with, `ON CONFLICT DO NOTHING`), and its deletion of what the window forgot is done again by every
        carried-out action's audit transaction (`changed`). Racing processes still count each other's files: a
        file of `mine` is in the table already, for any process that counts after this read."""
        rows = self._db.read_now("SELECT path FROM recent_changes WHERE at >= ?", (self._clock() - self._window_s,))
        if rows is None:
            return None
        recent: set[str] = {path for (path,) in rows}
        return recent if mine <= recent else None

    def _count_in(self, mine: set[str], action_id: str) -> set[str]:
        """The files changed within the window with `mine` among them. Under the threshold, `mine` are noted at once
        as `action_id`'s, in the same write transaction as the count (so of processes racing, each counts the
        others'); `settle` takes them back if the action is not carried out."""
        now = self._clock()
        cutoff = now - self._window_s
        # Not synced by itself (power-loss durability): a mark for the processes running now, which a power loss
        # ends too; what outlives it is noted again by the action's audit event, durable before its reply (`settle`).
        with self._db.write(synced=False) as conn:
            recent = {path for (path,) in conn.execute("SELECT path FROM recent_changes WHERE at >= ?", (cutoff,))}
            everything = recent | mine
            if len(everything) < self._rules.consensus_files:
                conn.execute("DELETE FROM recent_changes WHERE at < ?", (cutoff,))
                noted = sorted(mine - recent)
                conn.executemany(
                    "INSERT INTO recent_changes (path, at, action_id) VALUES (?, ?, ?) ON CONFLICT (path) DO NOTHING",
                    [(path, now, action_id) for path in noted],
                )
                self._noting[action_id] = (noted, now)
        return everything

    def changed(self, writes: Writes, paths: Iterable[str], *, approved: bool) -> None:
        """Note files a carried-out action changed (counted ones, not artifacts), in its audit transaction
        (`writes`). An approved action's files, and those before it, were reviewed: the count starts again."""
        if self._window_s <= 0:
            return
        now = self._clock()
        if approved:
            # Every file noted before this commits (whatever its date: the clock may have been set back).
            writes.add("DELETE FROM recent_changes")
            return
        writes.add("DELETE FROM recent_changes WHERE at < ?", (now - self._window_s,))
        for path in paths:
            writes.add(
                "INSERT INTO recent_changes (path, at) VALUES (?, ?) "
                "ON CONFLICT (path) DO UPDATE SET at = excluded.at, action_id = NULL",
                (path, now),
            )

    def settle(self, writes: Writes, action_id: str, *, carried_out: bool | None) -> None:
        """The end of action `action_id`: the decision it claimed stays used if it was `carried_out` or may
        have been (None: it failed or was cancelled part way); if it was not (refused, or only shadowed), it
        is given back, in the action's audit transaction (`writes`)."""
        decision_id = self._claims.pop(action_id, None)
        if decision_id is not None and carried_out is False:
            writes.add("DELETE FROM decision_uses WHERE decision_id = ? AND action_id = ?", (decision_id, action_id))
        # (Only an action that noted files has rows to settle: a read's event then carries no statement.)
        noting = self._noting.pop(action_id, None) if self._window_s > 0 else None
        if noting is not None:
            if carried_out is False:  # (the files it was about to change: not changed after all)
                writes.add("DELETE FROM recent_changes WHERE action_id = ?", (action_id,))
            else:  # (changed, or may have been: they count, from when they were checked)
                if carried_out is None:
                    # Noted again, should a power loss take back their unsynced noting (`_count_in`): a part of the
                    # action may have happened. (A carried-out action's changed files are noted by `changed`.)
                    noted, at = noting
                    for path in noted:
                        writes.add(
                            "INSERT INTO recent_changes (path, at) VALUES (?, ?) ON CONFLICT (path) DO NOTHING",
                            (path, at),
                        )
                writes.add("UPDATE recent_changes SET action_id = NULL WHERE action_id = ?", (action_id,))

    def _claim(self, decision_id: str, action_id: str) -> bool:
        """Take `decision_id` for `action_id` (atomically, against every process of this body); False if an
        earlier action has it."""
        with self._db.write() as conn:
            row = conn.execute("SELECT action_id FROM decision_uses WHERE decision_id = ?", (decision_id,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO decision_uses (decision_id, action_id, at) VALUES (?, ?, ?)",
                    (decision_id, action_id, self._clock()),
                )
            elif row[0] != action_id:
                return False
        self._claims[action_id] = decision_id
        return True

    async def check_irreversible(self, decision_id: str | None, impact: Impact, reason: str, *, action_id: str) -> bool:
        """An action undo cannot take back needs a human's approval, when the policy says so. True when a
        decision granted it (`check`)."""
        if not self._approve_irreversible:
            return False
        why = f"it is irreversible ({reason})"
        await self.require(decision_id, impact, "human", action_id=action_id, why=why, human_only=True)
        return True

    async def require(
        self,
        decision_id: str | None,
        impact: Impact,
        needs: Needs,
        *,
        action_id: str,
        why: str | None = None,
        human_only: bool = False,
        paths: Iterable[str] = (),
    ) -> None:
        """Refuse unless `decision_id` names a decision approved for at least `impact` and not used by another
        action than `action_id` (the guard's last word); then `action_id` holds it."""
        # (voting exists: a linked body's decision goes to the brain's panel; a standalone body's to a human)
        how = "a human approval" if needs == "human" else "consensus (the brain's review panel; unlinked: a human's)"
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
        if not self._claim(decision_id, action_id):
            raise ApprovalRequired(f"decision {decision_id} was used by an earlier action already; {ask}", ask=wanted)


def _named(path: str, approved: list[str]) -> bool:
    """Whether `path` is one of the approved paths, or below an approved directory."""
    return any(path == a or path.startswith(a.rstrip("/") + "/") for a in approved)
