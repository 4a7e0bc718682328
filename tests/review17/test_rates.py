# pyright: strict
"""Review 17 of the compliance gate's rate windows taken off the event loop (`RateWindows`): the rates file removed
or replaced while bodies run. Real SQLite files."""

from __future__ import annotations

from pathlib import Path

from body_mcp.compliance import WINDOWS_FILE, RateWindows


def test_a_rates_file_removed_while_bodies_run_still_holds_one_cap(tmp_path: Path) -> None:
    """Was a hole (low), fixed. Reproduce: two bodies of a home count a site's cap of 6 a minute in
    `compliance-rates.sqlite`; the file is removed (with its -wal and -shm: a home cleaned, or the doctor's advice
    for a damaged one followed while another body ran). The running bodies kept counting in the unlinked file, through
    their open connections, while a body started since (or one whose connection had failed) made a new file and
    counted there: each file admitted the whole cap, 12 requests in the minute. Fix: each take checks the path still
    leads to the file its connection opened (one stat) and opens it anew if not, so all count in the same file."""
    windows = tmp_path / WINDOWS_FILE
    running = RateWindows(windows)
    assert running.take("site", 6)
    for path in tmp_path.iterdir():
        path.unlink()
    admitted = sum(running.take("site", 6) for _ in range(6))
    later = RateWindows(windows)  # (a body started since: a connection of its own)
    admitted_later = sum(later.take("site", 6) for _ in range(6))
    assert admitted + admitted_later == 6, (admitted, admitted_later)
