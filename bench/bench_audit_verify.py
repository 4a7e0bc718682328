"""`swarm audit verify --full` (the whole chain, from its first event): memory and speed against a bare HMAC loop.

    uv run python bench/bench_audit_verify.py [--runs 3] [--sizes 10000,100000]

For each size, a workspace's trail of that many events (tool calls of ~700 bytes, signed with the workspace's
own key and inserted in one transaction; one event appended through the store to anchor the head). Then:

- memory: the peak RSS of `swarm audit verify --full` as a process (`wait4`), and tracemalloc's peak in this process
  around `AuditStore.verify()` alone;
- speed, alternating pair by pair within each run: `AuditStore.verify()` (every event from the first, the
  anchor) vs a bare loop over the same rows that computes each body's HMAC-SHA-256 (`hmac.new`) and compares
  it. Prints, per run, the ratio of the medians, and min/median/max over the runs of verify's speed as a
  fraction of the bare loop's.

Targets (issue #22): constant memory; >= 50% of the bare loop's speed.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from body_mcp import Admin, BodySettings
from body_mcp.audit import _anchor
from body_mcp.audit._chain import Chain
from body_mcp.audit._files import read_key
from shared_protocol import AuditEvent
from shared_protocol.config import SwarmConfig


def _fill(settings: BodySettings, count: int) -> None:
    with Admin.open(settings, by="human:bench") as admin:
        found = read_key(admin.paths.audit.key)
        assert found is not None
        chain = Chain(found.key, admin.audit.body_id)
        body_id = admin.audit.body_id
    prev = chain.genesis()
    rows: list[tuple[int, str, str, None, str, str]] = []
    with sqlite3.connect(settings.paths.db) as conn:
        for seq in range(1, count + 1):
            event = AuditEvent(
                seq=seq,
                id=f"act_{seq:012x}",
                ts="2026-12-06T00:00:00.000000+00:00",
                kind="tool_call",
                body_id=body_id,
                agent="claude-code",
                session="ses_bench",
                tool="write_file",
                arguments={"path": f"src/pkg/module_{seq}.py", "content": {"sha256": "ab" * 32, "size": seq}},
                rationale=f"write the module number {seq} as the task asks",
                outcome="ok",
                files=[f"src/pkg/module_{seq}.py"],
                detail={"bytes": seq, "created": False},
                prev_mac=prev,
                mac="",
            )
            payload: dict[str, Any] = event.signed_payload()
            body, mac = chain.sign(payload)
            rows.append((seq, event.id, event.ts, None, body, mac))
            prev = mac
            if len(rows) == 5000:
                conn.executemany(
                    "INSERT INTO audit_events (seq, id, ts, decision_id, body, mac) VALUES (?,?,?,?,?,?)", rows
                )
                rows.clear()
        conn.executemany("INSERT INTO audit_events (seq, id, ts, decision_id, body, mac) VALUES (?,?,?,?,?,?)", rows)
    # The anchor names the head, as the store writes it after a commit.
    settings.paths.audit.anchor.write_bytes(_anchor.encode(count, prev, chain.anchor_tag))
    with Admin.open(settings, by="human:bench") as admin:  # and one event through the store
        admin.record(action="note", rationale="anchor the bench's trail")


def _bare(db: Path, key: bytes) -> tuple[float, int]:
    """Every row read in order, its body's HMAC computed and compared with its `mac`: nothing else (the stored
    body holds its `mac`, so they differ; the work is what counts)."""
    start = time.perf_counter()
    n = 0
    with sqlite3.connect(db) as conn:
        for body, mac in conn.execute("SELECT body, mac FROM audit_events ORDER BY seq"):
            hmac.compare_digest(hmac.new(key, body.encode(), hashlib.sha256).hexdigest(), mac)
            n += 1
    return time.perf_counter() - start, n


def _verify(settings: BodySettings) -> tuple[float, int]:
    with Admin.open(settings, by="human:bench") as admin:
        start = time.perf_counter()
        report = admin.audit.verify()
        elapsed = time.perf_counter() - start
    assert report.ok, report.summary()
    return elapsed, report.events


def _cli_peak_rss_kb(workspace: Path, home: Path, checkout: str | None = None) -> tuple[int, float]:
    env = {**os.environ, "SWARM_HOME": str(home)}
    env.pop("SWARM_CONFIG", None)
    if checkout is not None:
        env["PYTHONPATH"] = checkout
    start = time.perf_counter()
    proc = subprocess.Popen(
        # `--full`: every event from the first (what verify does; an older checkout has no such flag, nor need)
        [
            sys.executable,
            "-m",
            "swarm_cli",
            "audit",
            "verify",
            *(["--full"] if checkout is None else []),
            "--workspace",
            str(workspace),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=home,  # (not the checkout: `-m` puts the working directory first on the path)
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    out = proc.stdout.read().decode() if proc.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"swarm audit verify failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    assert "audit chain OK" in out, out
    return usage.ru_maxrss, elapsed


def _traced_peak(settings: BodySettings) -> int:
    with Admin.open(settings, by="human:bench") as admin:
        tracemalloc.start()
        try:
            assert admin.audit.verify().ok
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--pairs", type=int, default=5, help="verify/bare pairs per run (their medians)")
    parser.add_argument(
        "--before", metavar="DIR", help="also run this checkout's `swarm audit verify` (e.g. /work/main) on each trail"
    )
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
            home, workspace = Path(tmp, "home"), Path(tmp, "ws")
            home.mkdir()
            workspace.mkdir()
            settings = BodySettings(workspace=workspace, home=home, config=SwarmConfig())
            start = time.perf_counter()
            _fill(settings, size)
            db_mb = settings.paths.db.stat().st_size / 1e6
            print(f"{size} events ({db_mb:.0f} MB state.db) written in {time.perf_counter() - start:.1f} s")
            found = read_key(settings.paths.audit.key)
            assert found is not None
            rss_kb, cli_s = _cli_peak_rss_kb(workspace, home)
            print(f"  swarm audit verify --full: peak RSS {rss_kb / 1024:.0f} MB, {cli_s:.2f} s (the whole command)")
            if args.before:
                rss_kb, cli_s = _cli_peak_rss_kb(workspace, home, args.before)
                print(f"  the same from {args.before}: peak RSS {rss_kb / 1024:.0f} MB, {cli_s:.2f} s")
            print(f"  tracemalloc peak around AuditStore.verify(): {_traced_peak(settings) / 1024:.0f} KB")
            fractions: list[float] = []
            for run in range(args.runs):
                verify_times: list[float] = []
                bare_times: list[float] = []
                for _ in range(args.pairs):  # alternating, pair by pair
                    bare_s, bare_n = _bare(settings.paths.db, found.key)
                    verify_s, verified = _verify(settings)
                    assert verified == bare_n, (verified, bare_n)
                    bare_times.append(bare_s)
                    verify_times.append(verify_s)
                verify_s, bare_s = statistics.median(verify_times), statistics.median(bare_times)
                fractions.append(bare_s / verify_s)
                print(
                    f"  run {run + 1} (medians of {args.pairs} pairs): verify {verify_s:.3f} s "
                    f"({verify_s / size * 1e6:.1f} us/event), bare HMAC loop {bare_s:.3f} s "
                    f"({bare_s / size * 1e6:.1f} us/row): verify at {bare_s / verify_s:.0%} of its speed",
                    flush=True,
                )
            print(
                f"  verify's speed / the bare loop's, min/median/max over {args.runs} runs: "
                f"{min(fractions):.0%} / {statistics.median(fractions):.0%} / {max(fractions):.0%}"
            )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
