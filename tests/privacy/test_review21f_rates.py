"""Review of #21's newest fix (attack 21f): the per-minute windows in `$SWARM_HOME/compliance-rates.sqlite`
(`RateWindows`): a corrupt file, clocks that step, two processes. Real SQLite files and real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from body_mcp.compliance import WINDOWS_FILE, Compliance, RateWindows
from body_mcp.exceptions import ConfigError, UserError
from shared_protocol.config import ComplianceConfig


def test_two_processes_share_one_cap(tmp_path: Path) -> None:
    """Held: two processes taking 8 each from one file with a cap of 10 a minute are admitted 10 in all."""
    windows = tmp_path / WINDOWS_FILE
    RateWindows(windows).close()  # (the schema made once, before the race)
    script = (
        "import sys, time\nfrom pathlib import Path\nfrom body_mcp.compliance import RateWindows\n"
        "w = RateWindows(Path(sys.argv[1]))\n"
        "print(sum(w.take('site', 10, time.time()) for _ in range(8)))\n"
    )
    runs = [subprocess.Popen([sys.executable, "-c", script, str(windows)], stdout=subprocess.PIPE) for _ in range(2)]
    admitted = [int(run.communicate(timeout=30)[0]) for run in runs]
    assert sum(admitted) == 10, admitted


@pytest.mark.xfail(
    strict=True,
    reason="HOLE (low): a corrupt compliance-rates.sqlite stops every body of the home from starting with a bare "
    "sqlite3.DatabaseError that names no file (even with no per-minute cap configured)",
)
def test_a_corrupt_rates_file_is_a_clear_error_naming_it(tmp_path: Path) -> None:
    """Reproduce: write garbage to `$SWARM_HOME/compliance-rates.sqlite`, then build the body's `Compliance` (as
    `Body` does at start, caps or not): `sqlite3.DatabaseError: file is not a database`, no path, no advice.

    Fix: catch `sqlite3.Error` in `RateWindows.__init__` and raise a `ConfigError` naming the file and saying it may
    be deleted (it holds only the last minute's request times); or open it lazily, on a capped site's first
    request, and refuse that request (503, audited) rather than the body."""
    windows = tmp_path / WINDOWS_FILE
    windows.write_bytes(b"not a database " * 512)
    with pytest.raises((ConfigError, UserError), match=WINDOWS_FILE):
        Compliance(ComplianceConfig(), windows=windows)


@pytest.mark.xfail(
    strict=True,
    reason="HOLE (low): a wall clock stepped back (NTP, a VM resumed) leaves rows in the future that count for as "
    "long as the step: a site with a cap is refused for up to the step (an hour here), not a minute",
)
def test_a_clock_stepped_back_does_not_close_a_site_for_longer_than_a_minute(tmp_path: Path) -> None:
    """Reproduce: 3 requests admitted at t=10000 under a cap of 3; the clock steps back an hour; 61 s later (by the
    new clock) the window still counts the 3 rows (`ts > now - 60` holds for rows in the future), and stays full
    until the clock reaches 10060 again. Fail-closed, but one step of the clock shuts a site for its length.

    Fix: prune or ignore rows whose `ts` is later than `now` (a row from the future is a clock step: drop it), or
    keep a monotonic clock per process beside the wall clock."""
    windows = RateWindows(tmp_path / WINDOWS_FILE)
    assert all(windows.take("site", 3, 10_000.0 + i) for i in range(3))
    stepped_back = 10_000.0 - 3600
    assert not windows.take("site", 3, stepped_back + 1)  # (still within a minute of the last request: fair)
    assert windows.take("site", 3, stepped_back + 61), "a minute later by the clock, the site is still closed"
