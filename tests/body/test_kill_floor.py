"""The kill fan-out bench's floor (`bench/_kill_floor.py`): bare processes that write until their server says kill,
then refuse with `kill_switch_engaged` until it says resume, as the bench's raw client reads a body's answers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

FLOOR = Path(__file__).resolve().parents[2] / "bench" / "_kill_floor.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str) -> None:
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def _call(stdin: IO[bytes], stdout: IO[bytes], ident: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    stdin.write(json.dumps({"jsonrpc": "2.0", "id": ident, "method": method, "params": params}).encode() + b"\n")
    stdin.flush()
    reply: dict[str, Any] = json.loads(stdout.readline())
    assert reply["id"] == ident
    return reply["result"]


def _write(stdin: IO[bytes], stdout: IO[bytes], ident: int) -> dict[str, Any]:
    arguments = {"path": "bench/0.txt", "content": f"v{ident}", "rationale": "floor"}
    return _call(stdin, stdout, ident, "tools/call", {"name": "write_file", "arguments": arguments})


def _until(stdin: IO[bytes], stdout: IO[bytes], start: int, refused: bool) -> int:
    """Write until the answer is refused (or done, `refused` False); the next call id. Within 10 s."""
    ident, deadline = start, time.monotonic() + 10
    while time.monotonic() < deadline:
        result = _write(stdin, stdout, ident)
        ident += 1
        if result["isError"] == refused:
            if refused:
                assert result["structuredContent"]["code"] == "kill_switch_engaged"
            return ident
    raise AssertionError(f"no {'refusal' if refused else 'write'} within 10 s")


def test_a_floor_body_writes_until_its_server_says_kill_then_refuses_until_resume(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, str(FLOOR), "server", str(port)])
    body: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v1/status", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the floor's server did not come up"
                time.sleep(0.02)
        body = subprocess.Popen(
            [sys.executable, str(FLOOR), "body", url, str(tmp_path), "0.5"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert body.stdin is not None and body.stdout is not None
        info = {"name": "test", "version": "0"}
        init = _call(body.stdin, body.stdout, 1, "initialize", {"protocolVersion": "2025-11-25", "clientInfo": info})
        assert init["protocolVersion"] == "2025-11-25"
        result = _write(body.stdin, body.stdout, 2)
        assert result["isError"] is False
        assert (tmp_path / "bench" / "0.txt").read_text() == "v2"
        _post(f"{url}/v1/kill")  # (published to every stream before it is answered)
        ident = _until(body.stdin, body.stdout, 3, refused=True)
        written = (tmp_path / "bench" / "0.txt").read_text()
        assert _write(body.stdin, body.stdout, ident)["isError"] is True
        assert (tmp_path / "bench" / "0.txt").read_text() == written  # (a refused call wrote nothing)
        _post(f"{url}/v1/resume")
        _until(body.stdin, body.stdout, ident + 1, refused=False)
    finally:
        if body is not None:
            body.kill()
            body.wait(10)
        server.kill()
        server.wait(10)
