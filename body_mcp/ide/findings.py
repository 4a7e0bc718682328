"""What `swarm doctor` reports: one `Finding` per check, each with a stable code and its fix."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DoctorCheck(StrEnum):
    """What a finding is about: stable strings (tests and scripts branch on them)."""

    SETUP = "setup"
    CONFIG_FILE = "config_file"
    REGISTRATION = "registration"
    MCP_APPROVAL = "mcp_approval"
    DENY_RULE = "deny_rule"
    ALLOW_RULE = "allow_rule"
    HOOK = "hook"
    GITIGNORE = "gitignore"
    BUILTIN_TOOLS = "builtin_tools"
    BODY_STARTS = "body_starts"
    SANDBOX = "sandbox"
    TOOLCHAINS = "toolchains"
    WAKE = "wake"
    COMPLIANCE = "compliance"


@dataclass(kw_only=True, frozen=True)
class Finding:
    """One check's result: what it is about, whether it passed, and the exact fix when it did not."""

    ide: str
    check: DoctorCheck
    ok: bool
    subject: str
    message: str
    fix: str | None = None
