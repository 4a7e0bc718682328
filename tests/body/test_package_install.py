"""A real `pip install` (and `uv pip install`) inside the sandbox, through the counting proxy, from a package
index on 127.0.0.1 (PEP 503, serving a wheel the test builds) whose address is pinned in config: the installed
package lands in the task's environment, nothing in the workspace changes, and every request is counted and audited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from body_mcp import build_server
from body_mcp.state import StatePaths
from tests.fakes.pkgindex import pure_wheel, serve_index
from tests.fakes.static_http import Site

from ..conftest import make_body, require_binary
from .helpers import call, ok

pytestmark = pytest.mark.anyio

PROJECT = "swarm-tinypkg"
MODULE = "swarm_tinypkg"
WHEEL = f"{MODULE}-0.1-py3-none-any.whl"  # (the name pure_wheel gives it)
GREETING = "hello from the local index"


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Site]:
    """A PEP 503 simple index on 127.0.0.1 serving one pure-Python wheel the test builds."""
    wheel = pure_wheel(tmp_path, PROJECT, {f"{MODULE}/__init__.py": f"GREETING = {GREETING!r}\n"})
    with serve_index([wheel]) as site:
        yield site


INSTALLERS = {
    "pip": [".venv/bin/python", "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--trusted-host"],
    "uv": ["uv", "pip", "install", "--allow-insecure-host"],
}


@pytest.mark.parametrize("installer", ["pip", "uv"])
async def test_a_package_installs_from_a_pinned_local_index_through_the_proxy(
    workspace: Path, home: Path, index: Site, installer: str
) -> None:
    require_binary("bwrap", "bubblewrap")
    require_binary("python3", "python3-venv")
    port, asked = index.port, index.asked
    sandbox = {"allowed_domains": ["pkgs.test"], "pinned_hosts": {"pkgs.test": f"127.0.0.1:{port}"}}
    body = make_body(workspace, home, {"sandbox": sandbox})
    install = [*INSTALLERS[installer], "pkgs.test", "--index-url", "http://pkgs.test/simple/", PROJECT]
    try:
        async with Client(build_server(body)) as client:
            # (uv installs into the venv by itself: pip's bootstrap, some 4 s of CPU, only for pip)
            bare = ["--without-pip"] if installer == "uv" else []
            venv = ok(await call(client, "run_command", argv=["python3", "-m", "venv", *bare, ".venv"], timeout_s=300))
            assert venv["exit_code"] == 0, venv["stderr"]
            installed = ok(await call(client, "run_command", argv=install, network=True, timeout_s=300))
            assert installed["exit_code"] == 0, installed["stderr"]
            assert installed["changes"] == []
            used = ok(
                await call(client, "run_command", argv=["python", "-c", f"import {MODULE}; print({MODULE}.GREETING)"])
            )
            assert used["stdout"].strip() == GREETING
            # Without network=true, the same install reaches nothing. (Told not to retry: pip would try 5 more
            # times over some 7.5 s of backoff, uv 3 more, before giving up on what can never answer.)
            again = [*install, "--force-reinstall"]
            again = [*again, "--retries", "0"] if installer == "pip" else ["env", "UV_HTTP_RETRIES=0", *again]
            offline = await call(client, "run_command", argv=again, timeout_s=300)
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


async def test_a_loopback_index_that_is_not_pinned_is_refused(workspace: Path, home: Path, index: Site) -> None:
    require_binary("bwrap", "bubblewrap")
    port, asked = index.port, index.asked
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
