"""Adversarial review 19b: two real `swarm body` processes over stdio on one workspace and one $SWARM_HOME (one
chain), interleaving lone writes (journaled and synced on the event loop, `try_append_now`) with bursts sent
without waiting (in flight together: the writer thread's path), one of them SIGKILLed right after a reply. Every
acknowledged write's event must be in the chain afterwards, and the chain must verify.

Run: python3 -m uv run --frozen pytest -n 0 tests/review19b/test_two_stdio_bodies.py
"""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from body_mcp.audit._journal import END  # pyright: ignore[reportPrivateUsage]


class StdioBody:
    def __init__(self, workspace: Path, home: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "swarm_cli", "body", "--workspace", str(workspace)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "SWARM_HOME": str(home)},
        )
        self.home = home
        self._next = 1
        self._buffer = b""
        init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        self._send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
        self._reply()
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _send(self, message: dict[str, Any]) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(json.dumps(message).encode() + b"\n")
        stdin.flush()

    def _reply(self) -> dict[str, Any]:
        stdout = self.proc.stdout
        assert stdout is not None
        deadline = time.monotonic() + 30
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([stdout], [], [], max(deadline - time.monotonic(), 0))
            assert ready, "no reply within 30 s"
            chunk = os.read(stdout.fileno(), 65536)
            assert chunk, "the body closed its stdout"
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def writes(self, names: list[str]) -> list[str]:
        """Send a write for each name without waiting, then read every reply: the acknowledged writes' action ids."""
        for name in names:
            arguments = {"path": name, "content": f"{name}\n", "rationale": "r"}
            self._send(
                {
                    "jsonrpc": "2.0",
                    "id": self._next,
                    "method": "tools/call",
                    "params": {"name": "write_file", "arguments": arguments},
                }
            )
            self._next += 1
        acknowledged: list[str] = []
        for _ in names:
            result = self._reply()["result"]
            assert result["isError"] is False, result
            acknowledged.append(str(result["structuredContent"]["action_id"]))
        return acknowledged

    def try_write(self, name: str) -> str | None:
        """One write: its action id if acknowledged, None if the body died first (no reply)."""
        arguments = {"path": name, "content": f"{name}\n", "rationale": "r"}
        self._send(
            {
                "jsonrpc": "2.0",
                "id": self._next,
                "method": "tools/call",
                "params": {"name": "write_file", "arguments": arguments},
            }
        )
        self._next += 1
        try:
            result = self._reply()["result"]
        except AssertionError:
            # (Killed: its stdout closed. Reaped only once a tracer attached to it has let go: waited for.)
            self.proc.wait(timeout=10)
            return None
        assert result["isError"] is False, result
        return str(result["structuredContent"]["action_id"])

    def settle_wait(self) -> None:
        """Wait for the settle after the last reply (within 50 ms): the journal emptied, its end mark at its start."""
        [journal] = self.home.rglob("audit.journal")
        deadline = time.monotonic() + 10
        while not journal.read_bytes().startswith(END):
            assert time.monotonic() < deadline, "no settle within 10 s"
            time.sleep(0.005)

    def wait_traced(self) -> None:
        """Wait for a tracer to be attached to the body."""
        status = Path(f"/proc/{self.proc.pid}/status")
        deadline = time.monotonic() + 10
        while "TracerPid:\t0\n" in status.read_text():
            assert time.monotonic() < deadline, "strace did not attach within 10 s"
            time.sleep(0.005)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def verify_cli(workspace: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm_cli", "audit", "verify", "--workspace", str(workspace)],
        capture_output=True,
        text=True,
        env={**os.environ, "SWARM_HOME": str(home)},
        check=False,
        timeout=60,
    )


def test_two_stdio_bodies_lone_and_concurrent_writes_one_sigkilled_keep_every_acknowledged_event(
    workspace: Path, home: Path
) -> None:
    """Held: lone writes alternate between the bodies (each on its loop path, the other's append seen through the
    journal's head), bursts of three in flight at once (the writer thread's shared sync) interleave with the other
    body's lone writes, and B is SIGKILLed right after a burst's replies (its commits owed). After, the surviving
    body writes again (it replays B's records first), and verify passes with every acknowledged event in it."""
    # (No approval window: 30 writes in a minute would need a human's approval.)
    home.mkdir(parents=True, exist_ok=True)
    (home / "swarm.toml").write_text("[policy]\ncumulative_window_s = 0\n")
    a, b = StdioBody(workspace, home), StdioBody(workspace, home)
    acknowledged: list[str] = []
    try:
        for round_ in range(2):
            acknowledged += a.writes([f"a{round_}.txt"])
            acknowledged += b.writes([f"b{round_}.txt"])
            acknowledged += a.writes([f"a{round_}x.txt", f"a{round_}y.txt", f"a{round_}z.txt"])
            acknowledged += b.writes([f"b{round_}x.txt", f"b{round_}y.txt", f"b{round_}z.txt"])
            acknowledged += b.writes([f"b{round_}w.txt"])
        b.kill()  # right after a reply: its event journaled and synced, its commit owed
        acknowledged += a.writes(["after1.txt"])
        acknowledged += a.writes(["after2.txt", "after3.txt"])
    finally:
        for body in (a, b):
            if body.proc.poll() is None:
                body.kill()
    verify = verify_cli(workspace, home)
    assert verify.returncode == 0 and "audit chain OK" in verify.stdout, verify.stdout + verify.stderr
    [db] = home.rglob("state.db")
    conn = sqlite3.connect(db)
    try:
        stored = [str(row[0]) for row in conn.execute("SELECT id FROM audit_events ORDER BY seq")]
    finally:
        conn.close()
    missing = [action for action in acknowledged if action not in stored]
    assert not missing, f"acknowledged writes missing from the chain: {missing}"
    assert len(set(stored)) == len(stored), "an event stored twice"
