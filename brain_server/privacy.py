"""The brain's side of `[privacy]`: its subject keys, protecting what it stores, and erasure and export.

What the brain writes from a request — a task's title and description, a decision's summary, rationale,
options and action — is protected before it is stored (`Brain.queue_task`, `Brain.ask`): personal data
encrypted under the brain's subject keys. Audit events arrive already protected by their body (under the
body's keys). API replies are revealed on their way out (`reveal_reply`: a token the brain holds a key for is
decrypted, any other is redacted), so a runner reads its task as it was written; pages to humans are redacted
(`wake/escalator.py`), never decrypted. The keys are in `privacy.db` beside a SQLite database: never in its
`backups/`, which copy the database only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, cast

from shared_protocol.brain import Decision, Task
from shared_protocol.privacy import (
    KEY_STORE_FILE,
    TOKEN,
    HeldItem,
    MemorySubjectKeys,
    Protector,
    SqliteSubjectKeys,
    SubjectKeys,
)

from .settings import BrainSettings
from .state import sqlite_path
from .wake.records import Escalation


def open_protector(settings: BrainSettings) -> Protector:
    """The brain's protector: `privacy_key_store`, else `privacy.db` beside a SQLite database, else in memory."""
    keys: SubjectKeys
    if settings.privacy_key_store:
        keys = SqliteSubjectKeys(Path(settings.privacy_key_store))
    elif settings.database_url and (db := sqlite_path(settings.database_url)) is not None:
        keys = SqliteSubjectKeys(db.parent / KEY_STORE_FILE)
    else:
        keys = MemorySubjectKeys()
    return Protector(settings.privacy, keys)


def reveal_reply(privacy: Protector, body: bytes) -> bytes:
    """A JSON reply with every token the brain holds a key for decrypted (JSON-escaped), any other redacted."""
    text = body.decode()

    def one(match: re.Match[str]) -> str:
        revealed = privacy.reveal(match.group())
        if revealed.startswith("[pii:"):
            return f"[pii:{match.group(1)}]"  # (erased, or a body's key: redacted)
        return json.dumps(revealed)[1:-1]

    return TOKEN.sub(one, text).encode()


def held_in(privacy: Protector, subject_id: str, where: str, texts: list[tuple[str, str]]) -> list[HeldItem]:
    """The values of `subject_id` in `texts` (field, text) of the record `where`, decrypted."""
    return [
        HeldItem(where=f"{where} {field}", kind=held.kind, value=held.value)
        for field, text in texts
        for held in privacy.held(text, subject_id)
    ]


MIGRATED_BY_BRAIN = "privacy_migrated_by_brain"
"""The `detail` key of a stored event whose text the brain's migration changed (its body's MAC no longer covers it)."""

_PROTECTED_FIELDS = ("rationale", "message", "arguments", "files", "detail", "turn")


def protect_stored_event(privacy: Protector, text: str) -> str | None:
    """A stored audit event (its JSON) with the personal data of what people and models wrote encrypted under the
    brain's keys, as its body protects a new event; None when that changes nothing. Its seq, id, `prev_mac` and
    `mac` stay (the chain's links); its `attest`, which covered the old text, is dropped and `detail` says why."""
    event = json.loads(text)
    if not isinstance(event, dict) or event.get("kind") == "checkpoint":  # pyright: ignore[reportUnknownMemberType]
        return None
    stored = cast(dict[str, Any], event)
    changed = dict(stored)
    for key in _PROTECTED_FIELDS:
        if changed.get(key) is not None:
            changed[key] = privacy.protect_value(changed[key])
    if changed == stored:
        return None
    changed["detail"] = {**(changed.get("detail") or {}), MIGRATED_BY_BRAIN: True}
    if "attest" in changed:
        changed["attest"] = None
    return json.dumps(changed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)  # (as stored)


_HISTORY_TEXT = frozenset({"title", "summary", "reason"})
"""What people and models wrote in a task history line's `detail` (the rest: ids, states, counts)."""


class RecordProtection:
    """What `swarm privacy migrate` does to the brain's own records written before `[privacy]` (or with it off):
    the fields people and models wrote, encrypted under the brain's keys as a new request's are (`Brain.queue_task`,
    `Brain.ask`, every reason); each method returns None when that changes nothing. The engines apply it in the
    transaction of the audit events' rewrite (`StateEngine.rewrite_audit_events`)."""

    def __init__(self, privacy: Protector) -> None:
        self._p = privacy

    def task(self, task: Task) -> Task | None:
        p = self._p.protect
        history = [
            event.model_copy(
                update={
                    "detail": {
                        key: p(value) if key in _HISTORY_TEXT and isinstance(value, str) else value
                        for key, value in event.detail.items()
                    }
                }
            )
            for event in task.history
        ]
        changed = task.model_copy(
            update={
                "title": p(task.title),
                "description": p(task.description),
                "acceptance": p(task.acceptance),
                "setup": p(task.setup),
                "outcome_summary": None if task.outcome_summary is None else p(task.outcome_summary),
                "history": history,
            }
        )
        return None if changed == task else changed

    def decision(self, decision: Decision) -> Decision | None:
        p = self._p.protect
        changed = decision.model_copy(
            update={
                "summary": p(decision.summary),
                "rationale": p(decision.rationale),
                "options": [p(option) for option in decision.options],
                "action": None if decision.action is None else p(decision.action),
                "files": [p(path) for path in decision.files],
                "votes": [vote.model_copy(update={"rationale": p(vote.rationale)}) for vote in decision.votes],
                "answers": [answer.model_copy(update={"reason": p(answer.reason)}) for answer in decision.answers],
            }
        )
        return None if changed == decision else changed

    def escalation(self, escalation: Escalation) -> Escalation | None:
        p = self._p.protect
        changed = escalation.model_copy(
            update={
                "title": p(escalation.title),
                "summary": p(escalation.summary),
                "facts": {label: p(value) for label, value in escalation.facts.items()},
                "closed_reason": p(escalation.closed_reason),
            }
        )
        return None if changed == escalation else changed

    def reason(self, reason: str) -> str | None:
        """A log entry's reason (the log's other columns are the brain's own: ids, counts)."""
        changed = self._p.protect(reason)
        return None if changed == reason else changed


def escalation_texts(escalation: Escalation) -> list[tuple[str, str]]:
    """The fields of an escalation record `swarm privacy export` reads."""
    texts = [("title", escalation.title), ("summary", escalation.summary)]
    texts += [(f"facts.{label}", value) for label, value in escalation.facts.items()]
    return [*texts, ("closed_reason", escalation.closed_reason)]
