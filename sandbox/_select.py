# pyright: strict
"""Choosing a backend that can isolate commands here, or saying clearly why none can."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ._bwrap_backend import BwrapBackend
from ._copy_backend import CopyStagingSandbox
from ._interface import Sandbox
from ._overlay_backend import BwrapOverlaySandbox
from .exceptions import NoIsolationAvailable

SandboxPreference = Literal["auto", "bwrap-overlay", "copy"]

_BACKENDS: dict[str, type[BwrapBackend]] = {
    BwrapOverlaySandbox.backend_name: BwrapOverlaySandbox,
    CopyStagingSandbox.backend_name: CopyStagingSandbox,
}


def select_sandbox(preferred: SandboxPreference = "auto", staging_root: Path | None = None) -> Sandbox:
    """The preferred backend if it works here; with "auto", the overlay one, else the copy one.

    Raises `NoIsolationAvailable` (listing each backend's reason) rather than ever running a command bare.
    Probing runs `true` through the backend once, which takes a few tens of milliseconds.
    """
    names = list(_BACKENDS) if preferred == "auto" else [preferred]
    reasons: dict[str, str] = {}
    for name in names:
        sandbox = _BACKENDS[name](staging_root=staging_root)
        availability = sandbox.available()
        if availability.ok:
            return sandbox
        sandbox.close()  # (its probe may have started a launcher server)
        reasons[name] = availability.reason
    raise NoIsolationAvailable(reasons)
