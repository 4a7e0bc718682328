"""The body as the agent's only hands in an IDE: setup files, hooks that gate built-in tools, and a doctor.

`configs` says what each IDE must read (pure), `merge` folds it into the user's files
without losing anything (pure), `install` writes it with a diff and a backup. `events`,
`decide` and `answers` turn one hook event into one answer (pure); `hook` runs that on
stdin/stdout within a time bound and audits it. `doctor` checks the result.
"""

from .answers import render
from .configs import IDE_NAMES, Environment, Launch, SetupIde, managed_variant, plan_ide
from .decide import Decision, HookCode, PathGuard, decide
from .doctor import check_rates_file, check_toolchains, run_doctor
from .events import Attempt, Ide, parse_event
from .exceptions import ConfigFileUnreadable, IdeSetupError, MalformedEvent, MergeConflict
from .findings import DoctorCheck, Finding
from .hook import AuditSink, BodyAuditSink, HookRuntime, MemoryAuditSink, handle, run_hook
from .install import PlannedWrite, apply_write, plan_write

__all__ = [
    "IDE_NAMES",
    "Attempt",
    "AuditSink",
    "BodyAuditSink",
    "ConfigFileUnreadable",
    "Decision",
    "DoctorCheck",
    "Environment",
    "Finding",
    "HookCode",
    "HookRuntime",
    "Ide",
    "IdeSetupError",
    "Launch",
    "MalformedEvent",
    "MemoryAuditSink",
    "MergeConflict",
    "PathGuard",
    "PlannedWrite",
    "SetupIde",
    "apply_write",
    "check_rates_file",
    "check_toolchains",
    "decide",
    "handle",
    "managed_variant",
    "parse_event",
    "plan_ide",
    "plan_write",
    "render",
    "run_doctor",
    "run_hook",
]
