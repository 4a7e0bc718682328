"""Readable explanations of audit events, for `explain` and `swarm audit explain`."""

from __future__ import annotations

import json
from typing import Any, cast

from shared_protocol import AuditEvent

_OUTCOMES = {
    "ok": "The guard allowed it and it was carried out.",
    "shadow": "Shadow mode: the guard recorded what would happen and changed nothing.",
    "refused": "The guard refused it; nothing was changed.",
    "failed": "It was allowed but failed while executing (or inside the guard, which then refuses).",
}


def printable(text: str) -> str:
    """`text` safe to print on a terminal: newlines, escape sequences and other unprintable characters the agent
    may have put in a rationale or a name are shown escaped (`\\n`, `\\x1b`), so a line cannot be forged."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def explain_event(event: AuditEvent) -> str:
    """An audited action as lines of text; every string the agent could choose is made printable."""
    return "\n".join(printable(line) for line in _lines(event))


def _lines(event: AuditEvent) -> list[str]:
    lines = [f"Action {event.id} (event #{event.seq}, {event.ts})"]
    if event.kind == "tool_call":
        version = f", logic version {event.logic_version}" if event.logic_version else ""
        lines.append(
            f"Context: agent '{event.agent}'{version}, session {event.session}, body {event.body_id}, "
            f"mode {event.mode}."
        )
        if event.turn is not None:
            turn = event.turn
            lines.append(f"Model turn: step {turn.step} — {turn.text or '(no text)'}")
        args = json.dumps(event.arguments, sort_keys=True)
        call = f" (tool call {event.turn.tool_call_id})" if event.turn is not None and event.turn.tool_call_id else ""
        lines.append(f"Asked: {event.tool} {args if len(args) < 600 else args[:600] + '…'}{call}")
        lines.append(f"Why (agent's rationale): {event.rationale or '(none given)'}")
        if event.decision_id:
            lines.append(f"Under decision: {event.decision_id}")
        lines.append(f"Guard decision: {_OUTCOMES[event.outcome]}")
        if event.code:
            lines.append(f"Rule: {event.rule} [{event.code}]: {event.message}")
        if event.files:
            shown = ", ".join(event.files[:20]) + (" …" if len(event.files) > 20 else "")
            lines.append(f"Files: {shown}")
        if isinstance(output := event.detail.get("output"), dict):
            lines.append(_output_line(event.id, cast("dict[str, Any]", output)))
        impact = event.impact
        lines.append(
            f"Measured impact: {impact.files} files, {impact.api_calls} API calls, ${impact.usd:.2f}; "
            f"took {event.duration_ms:.1f} ms."
        )
    elif event.kind == "human":
        lines.append(f"A human ({event.agent}) did '{event.tool}': {event.rationale}")
        if event.logic_version:
            lines.append(f"On the body of an agent at logic version {event.logic_version}.")
        if event.detail:
            lines.append(f"Details: {json.dumps(event.detail, sort_keys=True)}")
    elif event.kind == "checkpoint":
        lines.append(
            f"Retention checkpoint: events up to #{event.detail.get('through_seq')} were pruned; "
            "the chain continues from here."
        )
    else:
        lines.append(f"{event.kind}: {event.rationale}")
    return lines


def _output_line(action_id: str, output: dict[str, Any]) -> str:
    sizes: list[str] = []
    for stream in ("stdout", "stderr"):
        kept: dict[str, Any] = output.get(stream) or {}
        printed, stored = kept.get("bytes", 0), kept.get("kept", 0)
        sizes.append(f"{stream} {printed:,} bytes" + (f" ({stored:,} kept)" if stored != printed else ""))
    return f"Output: {', '.join(sizes)}; read it with `swarm audit output {action_id} [--stream stderr]`."
