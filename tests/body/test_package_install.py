"""A real `pip install` (and `uv pip install`) inside the sandbox, through the counting proxy, from a package
index on 127.0.0.1 (PEP 503, serving a wheel the test builds) whose address is pinned in config: the installed
package lands in the task's environment, nothing in the workspace changes, and every request is counted and audited."""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from body_mcp import build_server
from body_mcp.state import StatePaths

from ..conftest import make_body, require_binary
from .helpers import call, ok

pytestmark = pytest.mark.anyio

PROJECT = "swarm-tinypkg"
MODULE = "swarm_tinypkg"
WHEEL = f"{MODULE}-0.1-py3-none-any.whl"
GREETING = "hello from the local index"


def build_wheel(directory: Path) -> Path:
    """A pure-Python wheel, written by hand (a wheel is a zip with METADATA, WHEEL and RECORD)."""
    dist_info = f"{MODULE}-0.1.dist-info"
    files = {
        f"{MODULE}/__init__.py": f"GREETING = {GREETING!r}\n".encode(),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {PROJECT}\nVersion: 0.1\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: swarm-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = ""
    for name, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        record += f"{name},sha256={digest},{len(content)}\n"
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    path = directory / WHEEL
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return path


@pytest.fixture
def index(tmp_path: Path) -> Iterator[tuple[int, list[str]]]:
    """A PEP 503 simple index on 127.0.0.1 serving the wheel; yields its port and the paths it was asked for."""
    wheel = build_wheel(tmp_path)
    content = wheel.read_bytes()
    sha = hashlib.sha256(content).hexdigest()
    page = f'<html><body><a href="/files/{WHEEL}#sha256={sha}">{WHEEL}</a></body></html>'.encode()
    asked: list[str] = []

    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.wfile.write(self._head())

        def do_HEAD(self) -> None:  # (uv asks before it fetches a wheel)
            self._head()

        def _head(self) -> bytes:
            body, kind = {
                f"/simple/{PROJECT}/": (page, "text/html"),
                f"/files/{WHEEL}": (content, "application/octet-stream"),
            }.get(self.path, (b"", ""))
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", kind or "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=600")  # (so that pip caches what it fetched)
            self.end_headers()
            return body

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], asked
    finally:
        server.shutdown()
        thread.join()


INSTALLERS = {
    "pip": [".venv/bin/python", "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--trusted-host"],
    "uv": ["uv", "pip", "install", "--allow-insecure-host"],
}


@pytest.mark.parametrize("installer", ["pip", "uv"])
async def test_a_package_installs_from_a_pinned_local_index_through_the_proxy(
    workspace: Path, home: Path, index: tuple[int, list[str]], installer: str
) -> None:
    require_binary("bwrap", "bubblewrap")
    require_binary("python3", "python3-venv")
    port, asked = index
    sandbox = {"allowed_domains": ["pkgs.test"], "pinned_hosts": {"pkgs.test": f"127.0.0.1:{port}"}}
    body = make_body(workspace, home, {"sandbox": sandbox})
    install = [*INSTALLERS[installer], "pkgs.test", "--index-url", "http://pkgs.test/simple/", PROJECT]
    try:
        async with Client(build_server(body)) as client:
            venv = ok(await call(client, "run_command", argv=["python3", "-m", "venv", ".venv"], timeout_s=300))
            assert venv["exit_code"] == 0, venv["stderr"]
            installed = ok(await call(client, "run_command", argv=install, network=True, timeout_s=300))
            assert installed["exit_code"] == 0, installed["stderr"]
            assert installed["changes"] == []
            used = ok(
                await call(client, "run_command", argv=["python", "-c", f"import {MODULE}; print({MODULE}.GREETING)"])
            )
            assert used["stdout"].strip() == GREETING
            # Without network=true, the same install reaches nothing.
            offline = await call(client, "run_command", argv=[*install, "--force-reinstall"], timeout_s=300)
            assert (offline.structured_content or {}).get("exit_code") != 0
        event = body.audit.get(installed["action_id"])
        assert event is not None and event.impact.api_calls >= 2 and event.impact.files == 0
        assert {(r["host"], r["allowed"]) for r in event.detail["requests"]} == {("pkgs.test", True)}
    finally:
        body.close()
    assert f"/simple/{PROJECT}/" in asked and f"/files/{WHEEL}" in asked
    assert not (workspace / ".venv").exists()
    state = StatePaths(home=home, workspace=workspace)
    assert list((state.env / ".venv").glob(f"lib/python3*/site-packages/{MODULE}/__init__.py"))
    assert any((state.cache / installer).iterdir())  # the installer's cache is Swarm's, not ~/.cache


async def test_a_loopback_index_that_is_not_pinned_is_refused(
    workspace: Path, home: Path, index: tuple[int, list[str]]
) -> None:
    require_binary("bwrap", "bubblewrap")
    port, asked = index
    body = make_body(workspace, home, {"sandbox": {"allowed_domains": ["127.0.0.1", "localhost"]}})
    code = (
        "import urllib.request, urllib.error\n"
        f"for url in ('http://127.0.0.1:{port}/simple/{PROJECT}/', 'http://localhost:{port}/simple/{PROJECT}/'):\n"
        "    try:\n"
        "        print(urllib.request.urlopen(url, timeout=10).status)\n"
        "    except urllib.error.HTTPError as exc:\n"
        "        print(exc.code)\n"
    )
    try:
        async with Client(build_server(body)) as client:
            data = ok(await call(client, "run_command", argv=["python3", "-c", code], network=True))
            assert data["stdout"].split() == ["403", "403"], data["stderr"]
            event = body.audit.get(data["action_id"])
            assert event is not None and event.impact.api_calls == 0
    finally:
        body.close()
    assert asked == []
