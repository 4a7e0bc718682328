"""A decision in each IDE's exact answer format (what the hook prints on stdout, exit code 0).

Claude Code (`PreToolUse`):
`{"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "allow"|"deny"|"ask",
"permissionDecisionReason": "..."}}`; the reason of a deny is shown to Claude. "pass" prints `{}`:
no decision, so Claude Code's own permission flow (its deny/ask/allow rules and prompts) decides.

Cursor: `beforeShellExecution`/`beforeMCPExecution` answer `{"permission", "user_message",
"agent_message"}`; `beforeReadFile` answers `{"permission": "allow"|"deny", "user_message"}`;
`afterFileEdit` expects nothing (`{}`). `preToolUse` is documented both with that flat
`permission` shape and, in earlier versions, as `{"decision": "allow"|"deny", "reason"}`: the
answer carries both, so every version reads the same verdict. "pass" is "allow" to Cursor.
"""

from __future__ import annotations

from typing import Any

from .decide import Decision
from .events import Ide


def render(ide: Ide, event: str | None, decision: Decision) -> dict[str, Any]:
    """The JSON object the hook prints for `decision` on `event` (None: the event could not be read)."""
    if ide == "claude-code":
        return _claude_code(decision)
    return _cursor(event, decision)


def _claude_code(decision: Decision) -> dict[str, Any]:
    if decision.verdict == "pass":
        return {}
    return {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": decision.verdict,
            "permissionDecisionReason": decision.reason,
        }
    }


def _cursor(event: str | None, decision: Decision) -> dict[str, Any]:
    if event == "afterFileEdit":
        return {}
    permission = "allow" if decision.verdict == "pass" else decision.verdict
    if event == "beforeReadFile":
        # The read gate knows only allow and deny: anything short of allow is a deny.
        verdict = "allow" if permission == "allow" else "deny"
        return {"permission": verdict} | ({"user_message": decision.reason} if verdict == "deny" else {})
    answer: dict[str, Any] = {"permission": permission}
    if permission != "allow":
        answer |= {"user_message": decision.reason, "agent_message": decision.reason}
    if event not in ("beforeShellExecution", "beforeMCPExecution"):
        # preToolUse, or an event that could not be read: carry both spellings of the verdict.
        if permission in ("allow", "deny"):
            answer["decision"] = permission
        if permission != "allow":
            answer["reason"] = decision.reason
    return answer
