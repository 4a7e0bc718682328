"""The brain's side of `[privacy]`: its subject keys, protecting what it stores, and erasure and export.

What the brain writes from a request — a task's text, a decision's summary, rationale, options and action, an
outcome's report, a body's registration, every reason — is protected before it is stored (`Brain.queue_task`,
`Brain.ask`, `Brain.report_outcome`, `Brain.register`, ...; escalation records, answer links' recipients and a
wake-up service's errors in `wake/escalator.py`): personal data encrypted under the brain's subject keys. Audit
events arrive already protected by their body (under the body's keys). API replies are revealed on their way out
(`reveal_reply`: a token the brain holds a key for is decrypted, any other is redacted), so a runner reads its task
as it was written; pages to humans are redacted (`wake/escalator.py`), never decrypted. The keys are in `privacy.db`
beside a SQLite database: never in its `backups/`, which copy the database only.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar, cast

from pydantic import ValidationError

from shared_protocol.brain import (
    Decision,
    ReadinessOverride,
    ReadinessReport,
    ReadinessRequest,
    Task,
    TaskRequest,
    TaskSpend,
    Verification,
)
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
from .state import BodyRecord, KeptKeys, KeptRequest, LogEntry, sqlite_path
from .wake.records import Escalation, protect_escalation


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


KEYED = "hmac "
"""How a kept `Idempotency-Key` starts: a key as sent is visible ASCII, never a space, so the two never meet. A kept
request digest starts so too (a bare one is hex)."""


def keyed_task_key(privacy: Protector, token_id: str, key: str) -> str:
    """An `Idempotency-Key` as the brain keeps it in `task_keys`: an HMAC of (token, key) under its key store's
    secret (a client may build a key from what it knows, `ticket-<email>-42`; a bare digest of a guessable key
    could be reversed by guessing), so the same key from the same token finds the same row."""
    return KEYED + privacy.keys.keyed_hash("idempotency-key", f"{token_id}\0{key}")


def keyed_request_digest(privacy: Protector, digest: str) -> str:
    """The SHA-256 (hex) of a task request sent with an `Idempotency-Key`, as the brain keeps it in `task_keys` to
    know a replay: an HMAC of it under the key store's secret. A bare digest of a guessable request (a templated
    title naming an email) would confirm the guess to whoever reads the database or a backup, after an erasure too.
    (Keyed over the bare digest, not the request, so `swarm privacy migrate` can key a row kept bare before.)"""
    return KEYED + privacy.keys.keyed_hash("idempotency-request", digest)


def key_store_check(privacy: Protector) -> str:
    """The check value of the key store's secret (an HMAC of a constant under it: it tells the secret's holder it is
    the same, and nothing about it): kept beside the `Idempotency-Key`s keyed under it (`task_key_secret`)."""
    return privacy.keys.keyed_hash("key-store-check", "")


def key_store_holds(privacy: Protector, kept: KeptKeys) -> bool:
    """Whether the brain's key store can be the one `kept` keys were made under (`key_store_mismatch` finds nothing
    against it)."""
    return key_store_mismatch(privacy, kept) is None


def key_store_mismatch(privacy: Protector, kept: KeptKeys) -> str | None:
    """Why the brain's key store cannot be the one `kept` keys were made under, no check value of it being kept (they
    were kept before brain schema v26); None when it can.

    Not a store made at this start (its secret is new). It is theirs if it holds the key of a subject their tasks'
    personal data is encrypted under (ids are random: another store never holds one), or if its secret keys a kept
    request digest: each is keyed under the secret of the store it was kept under, and its request can be read again
    from its task (personal data revealed by this store, any other token as it was sent). A store whose secret keys
    none of the requests read back is not theirs (made anew by an earlier open, another brain's, a wrong
    `privacy_key_store`), whatever token-shaped text their tasks quote. With no request to read back (digests kept
    bare, values of subjects erased since), their tasks' tokens decide: none of their subjects held, not theirs; no
    token at all, nothing kept can tell and it is taken."""
    if privacy.keys.made:
        return "it was made at this start, after they were kept"
    subjects = {m.group(2) for text in kept.texts for m in TOKEN.finditer(text) if m.group(2)} - kept.erased
    if any(privacy.keys.key_by_id(subject) is not None for subject in subjects):
        return None
    read = [(request, digests) for request in kept.requests if (digests := _requests_again(privacy, request, kept))]
    if any(
        keyed_request_digest(privacy, digest) == request.request_sha256
        for request, digests in read
        for digest in digests
    ):
        return None
    if read:
        return f"its secret keys none of the {len(read)} kept request digests read back from their tasks"
    if subjects:
        return "it holds none of the keys their tasks' personal data is encrypted under"
    return None


def _requests_again(privacy: Protector, kept: KeptRequest, keys: KeptKeys) -> list[str]:
    """The SHA-256s the request that made `kept`'s task can have had, read back from the task with this store: each
    token it opens revealed or as it stands (a token is kept as sent, and one of this store's may have been: each
    way, for up to `_READ_BACK_TOKENS` of them; past that, all one way or all the other), any other token as it
    stands; none if it cannot be read back (a value of a subject erased since, or erased when it was kept)."""
    task = kept.task
    fields = [task.title, task.description, task.acceptance, task.repo, task.setup, *(task.acceptance_inputs or [])]
    if any(_ERASED_TOKEN.search(text) for text in fields):
        return []
    opened: list[tuple[int, int, int, str]] = []  # (field, start, end, value) of each token this store opens
    for index, text in enumerate(fields):
        for m in TOKEN.finditer(text):
            if m.group(2) in keys.erased:
                return []
            if m.group(2) and (held := privacy.held(m.group(), m.group(2))):
                opened.append((index, m.start(), m.end(), held[0].value))
    masks = range(1 << len(opened)) if len(opened) <= _READ_BACK_TOKENS else (0, (1 << len(opened)) - 1)
    digests: list[str] = []
    for mask in masks:
        texts = list(fields)
        for bit, (index, start, end, value) in reversed(list(enumerate(opened))):  # (from the end: offsets hold)
            if mask >> bit & 1:
                texts[index] = texts[index][:start] + value + texts[index][end:]
        title, description, acceptance, repo, setup, *inputs = texts
        try:
            request = TaskRequest(
                title=title,
                description=description,
                value_usd=task.value_usd,
                acceptance=acceptance,
                repo=repo,
                setup=setup,
                acceptance_inputs=None if task.acceptance_inputs is None else inputs,
            )
        except ValidationError:
            continue
        digests.append(hashlib.sha256(request.model_dump_json().encode()).hexdigest())
    return digests


_READ_BACK_TOKENS = 8
"""How many tokens of one kept request are each tried both ways (2^8 digests at most)."""
_ERASED_TOKEN = re.compile(r"\[pii:[a-z][a-z0-9_]*:erased\]")
"""What a value became when its subject was erased before it was kept (`Protector._encrypt`)."""


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


_HISTORY_TEXT = frozenset({"title", "summary", "reason", "detail"})
"""What people and models wrote in a task history line's `detail` (a verification's `detail` is the brain's
refutation, which quotes the audit event's arguments); the rest: ids, states, counts."""

_LOG_DETAIL_TEXT = frozenset({"error"})
"""What came from outside in a log entry's `detail`: a wake-up service's answer (`page_failed`), which may quote the
address paged; the rest is the brain's own (ids, counts, states, a recipient already shortened)."""


def protect_verification(protect: Callable[[str], str], verification: Verification | None) -> Verification | None:
    """A task's verification with its text protected: the command as the runner ran it (the task's acceptance
    command, decrypted for it), the brain's `detail`, and a pytest report's `reason`."""
    if verification is None:
        return None
    report = verification.report
    return verification.model_copy(
        update={
            "command": protect(verification.command),
            "detail": protect(verification.detail),
            "report": None if report is None else report.model_copy(update={"reason": protect(report.reason)}),
        }
    )


def protect_spend(protect: Callable[[str], str], spend: TaskSpend | None) -> TaskSpend | None:
    return None if spend is None else spend.model_copy(update={"model": protect(spend.model)})


def protect_evidence(privacy: Protector, evidence: dict[str, str]) -> dict[str, str]:
    """A task's evidence (what its runner reports: the acceptance command run, a branch, a kept worktree's path),
    keys and values protected."""
    return cast(dict[str, str], privacy.protect_value(evidence))


class RecordProtection:
    """What `swarm privacy migrate` does to the brain's own records written before `[privacy]` (or with it off):
    the fields people and models wrote, encrypted under the brain's keys as a new request's are (`Brain.queue_task`,
    `Brain.ask`, `Brain.report_outcome`, `Brain.register`, every reason); each method returns None when that changes
    nothing. The engines apply it in the transaction of the audit events' rewrite
    (`StateEngine.rewrite_audit_events`)."""

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
        runs = [
            run.model_copy(
                update={
                    "summary": p(run.summary),
                    "verification": protect_verification(p, run.verification),
                    "spend": protect_spend(p, run.spend),
                }
            )
            for run in task.shadow_runs
        ]
        inputs = task.acceptance_inputs
        changed = task.model_copy(
            update={
                "title": p(task.title),
                "description": p(task.description),
                "acceptance": p(task.acceptance),
                "setup": p(task.setup),
                "repo": p(task.repo),
                "acceptance_inputs": None if inputs is None else [p(path) for path in inputs],
                "outcome_summary": None if task.outcome_summary is None else p(task.outcome_summary),
                "verification": protect_verification(p, task.verification),
                "evidence": protect_evidence(self._p, task.evidence),
                "spend": protect_spend(p, task.spend),
                "shadow_runs": runs,
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
        changed = protect_escalation(self._p.protect, escalation)
        return None if changed == escalation else changed

    def reason(self, reason: str) -> str | None:
        """A piece of text: a log entry's reason, the kill switch's or a pause's, an answer link's recipient."""
        changed = self._p.protect(reason)
        return None if changed == reason else changed

    def log_detail(self, detail: dict[str, Any]) -> dict[str, Any] | None:
        """A log entry's `detail`: its `error` (the log's other detail values are the brain's own)."""
        changed = {
            key: self._p.protect(value) if key in _LOG_DETAIL_TEXT and isinstance(value, str) else value
            for key, value in detail.items()
        }
        return None if changed == detail else changed

    def readiness_report(self, report: ReadinessReport) -> ReadinessReport | None:
        changed = protect_readiness_items(self._p.protect, report)
        return None if changed == report else changed

    def readiness_override(self, override: ReadinessOverride) -> ReadinessOverride | None:
        changed = override.model_copy(update={"reason": self._p.protect(override.reason)})
        return None if changed == override else changed

    def task_key(self, token_id: str, key: str) -> str | None:
        """A kept `Idempotency-Key`: keyed (`keyed_task_key`) if it is still as sent."""
        return None if key.startswith(KEYED) else keyed_task_key(self._p, token_id, key)

    def task_request(self, digest: str) -> str | None:
        """A kept request digest: keyed (`keyed_request_digest`) if it is still bare."""
        return None if digest.startswith(KEYED) else keyed_request_digest(self._p, digest)

    def body(self, body: BodyRecord) -> BodyRecord | None:
        p = self._p.protect
        changed = replace(body, workspace=p(body.workspace), hostname=p(body.hostname))
        return None if changed == body else changed


R = TypeVar("R", ReadinessReport, ReadinessRequest)


def protect_readiness_items(protect: Callable[[str], str], report: R) -> R:
    """A readiness report (or request) with its items' `detail` and `fix` protected: the checks quote
    configuration (a wake-up recipient's number, an SMTP login's address)."""
    items = [
        item.model_copy(update={"detail": protect(item.detail), "fix": protect(item.fix)}) for item in report.items
    ]
    return report.model_copy(update={"items": items})


# -- what `swarm privacy export` reads -------------------------------------------------------


def escalation_texts(escalation: Escalation) -> list[tuple[str, str]]:
    """The fields of an escalation record `swarm privacy export` reads."""
    texts = [("title", escalation.title), ("summary", escalation.summary)]
    texts += [(f"facts.{label}", value) for label, value in escalation.facts.items()]
    return [*texts, ("closed_reason", escalation.closed_reason)]


def _verification_texts(prefix: str, verification: Verification | None) -> list[tuple[str, str]]:
    if verification is None:
        return []
    texts = [(f"{prefix}.command", verification.command), (f"{prefix}.detail", verification.detail)]
    if verification.report is not None:
        texts.append((f"{prefix}.report.reason", verification.report.reason))
    return texts


def task_texts(task: Task) -> list[tuple[str, str]]:
    """The fields of a task `swarm privacy export` reads: what `RecordProtection.task` protects."""
    texts = [("title", task.title), ("description", task.description)]
    texts += [("acceptance", task.acceptance), ("setup", task.setup), ("repo", task.repo)]
    texts += [(f"acceptance_inputs[{n}]", path) for n, path in enumerate(task.acceptance_inputs or [])]
    if task.outcome_summary is not None:
        texts.append(("outcome_summary", task.outcome_summary))
    texts += _verification_texts("verification", task.verification)
    texts += [(f"evidence.{key}", f"{key}: {value}") for key, value in task.evidence.items()]
    if task.spend is not None:
        texts.append(("spend.model", task.spend.model))
    for n, run in enumerate(task.shadow_runs):
        texts.append((f"shadow_runs[{n}].summary", run.summary))
        texts += _verification_texts(f"shadow_runs[{n}].verification", run.verification)
    for n, line in enumerate(task.history):
        texts += [
            (f"history[{n}].{key}", value)
            for key, value in line.detail.items()
            if key in _HISTORY_TEXT and isinstance(value, str)
        ]
    return texts


def decision_texts(decision: Decision) -> list[tuple[str, str]]:
    """The fields of a decision `swarm privacy export` reads."""
    texts = [("summary", decision.summary), ("rationale", decision.rationale)]
    texts += [(f"options[{n}]", option) for n, option in enumerate(decision.options)]
    texts += [(f"files[{n}]", path) for n, path in enumerate(decision.files)]
    texts += [(f"votes[{n}].rationale", vote.rationale) for n, vote in enumerate(decision.votes)]
    texts += [(f"answers[{n}].reason", answer.reason) for n, answer in enumerate(decision.answers)]
    if decision.action is not None:
        texts.append(("action", decision.action))
    return texts


def row_texts(row: dict[str, Any], side: str) -> list[tuple[str, str]]:
    """The text columns of a task row a compensating record keeps (`before` or `after`), as stored."""
    return [(f"{side}.{name}", value) for name, value in row.items() if isinstance(value, str) and "[pii:" in value]


def readiness_texts(report: ReadinessReport) -> list[tuple[str, str]]:
    return [
        text
        for n, item in enumerate(report.items)
        for text in ((f"items[{n}].detail", item.detail), (f"items[{n}].fix", item.fix))
    ]


def log_texts(entry: LogEntry) -> list[tuple[str, str]]:
    texts = [("reason", entry.reason)]
    return texts + [
        (f"detail.{key}", value)
        for key, value in entry.detail.items()
        if key in _LOG_DETAIL_TEXT and isinstance(value, str)
    ]
