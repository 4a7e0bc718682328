"""Review of #21's newest fix (attack 21f): the per-minute windows in `$SWARM_HOME/compliance-rates.sqlite`
(`RateWindows`): a corrupt file, clocks that step, two processes. Real SQLite files and real processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from body_mcp.compliance import WINDOWS_FILE, Compliance, RateWindows
from body_mcp.exceptions import StateUnusable
from body_mcp.ide import DoctorCheck, check_rates_file
from shared_protocol.config import ComplianceConfig
from tests.conftest import make_body


def test_two_processes_share_one_cap(tmp_path: Path) -> None:
    """Held: two processes taking 8 each from one file with a cap of 10 a minute are admitted 10 in all."""
    windows = tmp_path / WINDOWS_FILE
    script = (
        "import sys\nfrom pathlib import Path\nfrom body_mcp.compliance import RateWindows\n"
        "w = RateWindows(Path(sys.argv[1]))\n"
        "print(sum(w.take('site', 10) for _ in range(8)))\n"
    )
    runs = [subprocess.Popen([sys.executable, "-c", script, str(windows)], stdout=subprocess.PIPE) for _ in range(2)]
    admitted = [int(run.communicate(timeout=30)[0]) for run in runs]
    assert sum(admitted) == 10, admitted


@pytest.mark.anyio
async def test_a_corrupt_rates_file_refuses_only_the_capped_requests_naming_it(
    tmp_path: Path, workspace: Path, home: Path
) -> None:
    """Was a hole (low), fixed: a corrupt `$SWARM_HOME/compliance-rates.sqlite` stopped every body of the home from
    starting (`RateWindows` opened it in `Body.__init__`, caps or not) with a bare `sqlite3.DatabaseError: file is
    not a database`, naming no file. Now the file is opened by the first capped request: bodies start, with or
    without caps, and leave it as it is; a capped request is refused (503, `rate`, recorded like the proxy's other
    refusals) with a reason naming the file and saying to remove it; once it is removed, the next request is counted
    in a new file, without a restart. `swarm doctor` names the damaged file."""
    windows = home / WINDOWS_FILE
    garbage = b"not a database " * 512
    windows.write_bytes(garbage)
    capped = {"domains": {"site.test": {"max_requests_per_minute": 5}}}
    for config in ({}, {"compliance": capped}):
        make_body(workspace, home, config).close()
    assert windows.read_bytes() == garbage, "a body opened the rates file before any capped request"

    uncapped = Compliance(ComplianceConfig(), windows=windows)
    assert await uncapped.admit("site.test") is None
    gate = Compliance(ComplianceConfig.model_validate(capped), windows=windows)
    verdict = await gate.admit("site.test")
    assert verdict is not None and (verdict.status, verdict.rule) == (503, "rate")
    assert str(windows) in verdict.reason, verdict.reason
    with pytest.raises(StateUnusable) as raised:
        RateWindows(windows).take("site.test", 5)
    assert raised.value.path == windows and raised.value.damaged
    [finding] = check_rates_file(home)  # (`swarm doctor` says it too)
    assert (finding.check, finding.ok, finding.subject) == (DoctorCheck.COMPLIANCE, False, str(windows))

    windows.unlink()
    assert await gate.admit("site.test") is None, "the gate did not open the file anew once it was removed"
    with sqlite3.connect(windows) as db:
        assert db.execute("SELECT rule FROM rate_hits").fetchall() == [("site.test",)]
    assert check_rates_file(home) == []


def test_a_clock_stepped_back_closes_a_capped_site_for_a_minute_at_most(tmp_path: Path) -> None:
    """Was a hole (low), fixed: 3 requests admitted at t=10000 under a cap of 3, then the clock stepped back an hour
    (NTP, a VM resumed): the rows, in the future, still counted (`ts > now - 60` held for them), so the site stayed
    closed until the clock reached 10060 again, an hour. Now a row later than the clock is moved to now: it counts
    for one more minute by the new clock (the cap holds across the step), then it is pruned."""
    clock = [10_000.0]
    windows = RateWindows(tmp_path / WINDOWS_FILE, clock=lambda: clock[0])
    for i in range(3):
        clock[0] = 10_000.0 + i
        assert windows.take("site", 3)
    stepped_back = 10_000.0 - 3600
    for now in (stepped_back + 1, stepped_back + 59):
        clock[0] = now
        assert not windows.take("site", 3), "the minute's requests before the step no longer counted"
    clock[0] = stepped_back + 61
    assert windows.take("site", 3), "a minute after the step, the site is still closed"
    windows.close()
