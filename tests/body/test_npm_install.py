"""A real `npm install` inside the sandbox, through the counting proxy, from a tiny npm registry on 127.0.0.1
(a packument and a tarball the test builds) whose name is pinned in config: the package lands in the task's
`node_modules` (Swarm's state, not the workspace), and every request is counted and audited."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from body_mcp import build_server
from body_mcp.state import StatePaths
from tests.fakes.static_http import Reply, routes, serve_static

from ..conftest import make_body, require_binary
from .helpers import call, ok

pytestmark = pytest.mark.anyio

PACKAGE = "swarm-tiny"
VERSION = "1.0.0"
HOST = "npm.test"
GREETING = "hello from the local registry"


def tarball() -> bytes:
    files = {
        "package/package.json": json.dumps({"name": PACKAGE, "version": VERSION, "main": "index.js"}).encode(),
        "package/index.js": f"module.exports = {json.dumps(GREETING)};\n".encode(),
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


@pytest.fixture
def registry() -> Iterator[tuple[int, list[str]]]:
    """An npm registry on 127.0.0.1 serving one package; yields its port and the paths it was asked for."""
    content = tarball()
    url = f"http://{HOST}/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz"
    dist = {
        "tarball": url,
        "shasum": hashlib.sha1(content).hexdigest(),  # (npm's own checksum field)
        "integrity": "sha512-" + base64.b64encode(hashlib.sha512(content).digest()).decode(),
    }
    packument = json.dumps(
        {
            "name": PACKAGE,
            "dist-tags": {"latest": VERSION},
            "versions": {VERSION: {"name": PACKAGE, "version": VERSION, "dist": dist}},
        }
    ).encode()
    table = {
        f"/{PACKAGE}": Reply(200, packument, "application/json"),
        f"/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz": Reply(200, content, "application/octet-stream"),
    }
    with serve_static(routes(table)) as served:
        yield served.port, served.asked


async def test_npm_installs_from_a_pinned_local_registry_through_the_proxy(
    workspace: Path, home: Path, registry: tuple[int, list[str]]
) -> None:
    require_binary("bwrap", "bubblewrap")
    require_binary("npm", "npm")
    port, asked = registry
    (workspace / "package.json").write_text(
        json.dumps({"name": "app", "version": "0.0.1", "private": True, "dependencies": {PACKAGE: VERSION}})
    )
    (workspace / ".npmrc").write_text(f"registry=http://{HOST}/\n")
    sandbox = {"allowed_domains": [HOST], "pinned_hosts": {HOST: f"127.0.0.1:{port}"}}
    body = make_body(workspace, home, {"sandbox": sandbox})
    install = ["npm", "install", "--no-audit", "--no-fund", "--no-update-notifier"]
    try:
        async with Client(build_server(body)) as client:
            installed = ok(await call(client, "run_command", argv=install, network=True, timeout_s=300))
            assert installed["exit_code"] == 0, installed["stderr"]
            used = ok(await call(client, "run_command", argv=["node", "-e", f"console.log(require('{PACKAGE}'))"]))
            assert used["stdout"].strip() == GREETING, used["stderr"]
        event = body.audit.get(installed["action_id"])
        assert event is not None and event.impact.api_calls >= 2
        assert {(r["host"], r["allowed"]) for r in event.detail["requests"]} == {(HOST, True)}
    finally:
        body.close()
    assert f"/{PACKAGE}" in asked and f"/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz" in asked
    assert not (workspace / "node_modules").exists()
    state = StatePaths(home=home, workspace=workspace)
    assert (state.env / "node_modules" / PACKAGE / "index.js").is_file()
    assert any((state.cache / "npm").iterdir())  # npm's cache is Swarm's, not ~/.npm
