"""An audit event as a caller builds it (`EventDraft`), and where the chain put it (`Appended`).

The caller (the guard, the IDE hook, the CLI) fills in a draft; `AuditStore.append` gives it its `seq`,
`prev_mac` and `mac`. Arguments go into a draft redacted: file contents become `{sha256, size}`.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from shared_protocol import NO_IMPACT, Impact
from shared_protocol.audit import AuditKind, AuditOutcome
from shared_protocol.privacy import Protector

from .._factories import empty_dict, empty_list

_REDACTED_KEYS = frozenset({"content", "old_text", "new_text"})


def new_action_id() -> str:
    """Time-ordered, unique: `act_` + nanoseconds (hex) + 32 random bits (unique, not secret: no syscall)."""
    return f"act_{time.time_ns():x}{random.getrandbits(32):08x}"


def redact_arguments(value: Any, digests: list[str] | None = None) -> Any:
    """File contents become `{sha256, size}`: the trail proves what was written without holding it. The digests
    made are added to `digests` (a caller that knows them for no personal data spares the privacy scan)."""
    if type(value) is str:  # (most values: no isinstance chain)
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():  # pyright: ignore[reportUnknownVariableType]
            if key in _REDACTED_KEYS and isinstance(item, str):
                data = _utf8(item)
                digest = hashlib.sha256(data).hexdigest()
                if digests is not None:
                    digests.append(digest)
                out[str(key)] = {"sha256": digest, "size": len(data)}  # pyright: ignore[reportUnknownArgumentType]
            elif type(item) is str:  # pyright: ignore[reportUnknownArgumentType]  (most values: no call)
                out[str(key)] = item  # pyright: ignore[reportUnknownArgumentType]
            else:
                out[str(key)] = redact_arguments(item, digests)  # pyright: ignore[reportUnknownArgumentType]
        return out
    if isinstance(value, list):
        return [redact_arguments(item, digests) for item in value]  # pyright: ignore[reportUnknownVariableType]
    return value


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # lone surrogates (refused by validation): still hashed, as their UTF-8 would be
        return text.encode(errors="surrogatepass")


@dataclass(kw_only=True)
class EventDraft:
    """An audit event before the chain gives it a `seq`, `prev_mac` and `mac`."""

    id: str
    kind: AuditKind
    agent: str
    session: str
    rationale: str
    outcome: AuditOutcome
    tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=empty_dict)
    decision_id: str | None = None
    mode: Literal["live", "shadow"] = "live"
    code: str | None = None
    rule: str | None = None
    message: str | None = None
    files: list[str] = field(default_factory=empty_list)
    impact: Impact = NO_IMPACT
    duration_ms: float = 0.0
    detail: dict[str, Any] = field(default_factory=empty_dict)
    logic_version: str | None = None
    """The agent's logic version (agent mode); signed only when set (`SIGNED_WHEN_SET`)."""
    turn: dict[str, Any] | None = None
    """The model turn a call came from (`ModelTurn`, as JSON); signed only when set."""
    task_id: str | None = None
    """The task a runner's own call was for (`_meta` `swarm/task`); signed only when set."""


@dataclass(frozen=True, slots=True)
class Appended:
    """Where an event landed in the chain (the hot path needs no more than this)."""

    id: str
    seq: int
    mac: str


PROTECTED_FIELDS = ("rationale", "message", "arguments", "files", "detail", "turn")
"""What is protected in a new event (`protect_fields`): what people and models wrote."""


def protect_fields(privacy: Protector, fields: dict[str, Any]) -> None:
    """A draft's fields as a dict (`dict(draft.__dict__)`), in place, with the personal data in what people and models
    wrote (its rationale, message, arguments, files, detail and model turn) encrypted per subject
    (`shared_protocol.privacy`); a checkpoint holds none. What the store signs is built from that dict: no second
    draft is made (hot path: every event's)."""
    if not privacy.enabled or fields["kind"] == "checkpoint":
        return
    protect = privacy.protect
    fields["rationale"] = protect(fields["rationale"])
    if fields["message"] is not None:
        fields["message"] = protect(fields["message"])
    fields["arguments"] = privacy.protect_value(fields["arguments"])
    fields["files"] = [protect(name) for name in fields["files"]]
    fields["detail"] = privacy.protect_value(fields["detail"])
    if fields["turn"] is not None:
        fields["turn"] = privacy.protect_value(fields["turn"])
