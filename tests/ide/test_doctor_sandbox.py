"""swarm doctor says when commands cannot be sandboxed, and what to install."""

from __future__ import annotations

import pytest

import sandbox
from body_mcp.ide.doctor import check_sandbox
from body_mcp.ide.findings import DoctorCheck


def test_a_missing_sandbox_is_reported_with_its_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    def none_here(*_args: object, **_kwargs: object) -> sandbox.Sandbox:
        raise sandbox.NoIsolationAvailable({"bwrap-overlay": "bubblewrap not installed"})

    monkeypatch.setattr(sandbox, "select_sandbox", none_here)
    finding = check_sandbox()
    assert finding.check == DoctorCheck.SANDBOX and not finding.ok
    assert finding.fix is not None and "bubblewrap" in finding.fix


def test_an_available_sandbox_is_reported_ok() -> None:
    if sandbox.select_sandbox is None:  # pragma: no cover - the name always exists
        pytest.fail("select_sandbox missing")
    try:
        sandbox.select_sandbox("auto")
    except sandbox.NoIsolationAvailable:
        pytest.skip("no sandbox on this machine: apt-get install bubblewrap")
    assert check_sandbox().ok
