# pyright: strict
"""Exceptions of the sandbox.

    SandboxError
    ├── NoIsolationAvailable     no backend can isolate commands on this machine (commands never run bare)
    ├── InvalidSandboxSpec       the spec cannot be honoured safely (developer or config misuse)
    ├── ToolchainNotFound        a toolchain the config names is not on this machine
    ├── SandboxSetupFailed       the sandbox could not be set up; the command did not start
    └── StagedChangesUnreadable  the staging area holds something we cannot interpret; nothing may be applied

Every error fails closed: the command either did not run, or its changes are not reported as appliable.
"""

from __future__ import annotations


class SandboxError(Exception):
    """Base of every error raised on purpose by the sandbox."""


class NoIsolationAvailable(SandboxError):
    """No backend can isolate commands here. `reasons` maps each backend tried to why it cannot."""

    def __init__(self, reasons: dict[str, str]) -> None:
        self.reasons = dict(reasons)
        detail = "; ".join(f"{name}: {reason}" for name, reason in self.reasons.items())
        super().__init__(f"no sandbox can isolate commands on this machine ({detail})")


class InvalidSandboxSpec(SandboxError):
    """The spec asks for something the sandbox refuses to do (a home directory as toolchain, a bad cwd...)."""


class ToolchainNotFound(SandboxError):
    """A toolchain the config names (`[sandbox] python`, a toolchain path) is not on this machine. `name` says
    which tool, the message which key and value."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(message)


class SandboxSetupFailed(SandboxError):
    """Mounting or starting the sandbox failed before the command started. `detail` is the tool's stderr."""

    def __init__(self, message: str, *, detail: str = "") -> None:
        self.detail = detail
        super().__init__(f"{message}: {detail.strip()}" if detail.strip() else message)


class StagedChangesUnreadable(SandboxError):
    """The staging area contains an entry the change reader cannot interpret safely."""
