"""run_command's toolchains and task environment: `python` works, a venv lands in Swarm's state (not the
workspace, not counted), caches are Swarm's own, and a configured toolchain that is missing is a clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from body_mcp import Body, build_server
from body_mcp.exceptions import ConfigError
from body_mcp.ide import DoctorCheck, check_toolchains
from body_mcp.state import StatePaths
from sandbox import read_declared
from shared_protocol.config import ConfigInvalid, SandboxConfig, parse_config

from ..conftest import make_body, require_binary
from .helpers import call, ok

pytestmark = pytest.mark.anyio


async def run(client: Client, script: str, **extra: Any) -> dict[str, Any]:
    return ok(await call(client, "run_command", argv=["/bin/sh", "-ec", script], timeout_s=300, **extra))


async def test_a_venv_made_in_the_sandbox_lives_in_swarm_state_and_changes_nothing(
    client: Client, body: Body, workspace: Path, home: Path
) -> None:
    require_binary("bwrap", "bubblewrap")
    require_binary("python3", "python3-venv")
    # (--without-pip: nothing here uses pip, and its bootstrap is some 4 s of CPU)
    made = await run(client, "python --version && python3 -m venv --without-pip .venv")
    assert made["exit_code"] == 0, made["stderr"]
    assert made["changes"] == [] and made["applied"] is False
    assert not (workspace / ".venv").exists()
    env = StatePaths(home=home, workspace=workspace).env
    assert (env / ".venv" / "pyvenv.cfg").is_file()
    event = body.audit.get(made["action_id"])
    assert event is not None and event.impact.files == 0
    # The next command finds it activated: VIRTUAL_ENV, its bin first on PATH, uv's project environment.
    used = await run(client, 'python -c "import sys; print(sys.prefix)"; echo "$VIRTUAL_ENV $UV_PROJECT_ENVIRONMENT"')
    assert used["stdout"].splitlines() == [str(workspace / ".venv"), f"{workspace / '.venv'} {workspace / '.venv'}"]


async def test_package_caches_are_swarms_own_never_the_users(
    client: Client, workspace: Path, home: Path, tmp_path: Path
) -> None:
    require_binary("bwrap", "bubblewrap")
    data = await run(client, 'echo "$PIP_CACHE_DIR $UV_CACHE_DIR $npm_config_cache"; echo x > "$PIP_CACHE_DIR.probe"')
    assert data["exit_code"] == 0, data["stderr"]
    assert data["stdout"].split() == ["/run/swarm/cache/pip", "/run/swarm/cache/uv", "/run/swarm/cache/npm"]
    cache = StatePaths(home=home, workspace=workspace).cache
    assert (cache / "pip.probe").read_text() == "x\n"
    assert data["changes"] == []


async def test_the_path_holds_the_sandbox_links_before_the_system(client: Client) -> None:
    require_binary("bwrap", "bubblewrap")
    data = await run(client, 'echo "$PATH"; command -v python')
    path, python = data["stdout"].splitlines()
    assert path.split(":")[0] == "/run/swarm/bin" and python == "/run/swarm/bin/python"
    assert "/usr/bin" in path.split(":") and "shims" not in path


def test_a_configured_python_the_machine_lacks_stops_the_body_with_the_key_named(workspace: Path, home: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[sandbox\] python"):
        make_body(workspace, home, {"sandbox": {"python": "2.1"}})
    with pytest.raises(ConfigError, match="extra_toolchain_paths"):
        make_body(workspace, home, {"sandbox": {"extra_toolchain_paths": ["/opt/no-such-toolchain"]}})
    assert not (home / "workspaces").exists()  # nothing half-created


def test_doctor_reports_the_toolchains_found_and_a_missing_one(workspace: Path) -> None:
    (found,) = check_toolchains(SandboxConfig(), workspace)
    assert found.ok and found.check == DoctorCheck.TOOLCHAINS
    (missing,) = check_toolchains(SandboxConfig(python="/opt/none/bin/python3"), workspace)
    assert not missing.ok and missing.subject == "toolchain python" and missing.fix


def test_doctor_never_follows_a_declaring_file_out_of_the_workspace_nor_blocks_on_a_fifo(
    workspace: Path, tmp_path: Path
) -> None:
    """`.python-version`, `pyproject.toml` and `package.json` are read on the host: a symlink (to a file outside,
    here one that would declare a version this machine lacks) declares nothing, and a FIFO does not block."""
    import os

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "version").write_text("2.1\n")
    (outside / "pyproject.toml").write_text('[project]\nrequires-python = ">=2.1,<2.2"\n')
    (workspace / ".python-version").symlink_to(outside / "version")
    (workspace / "pyproject.toml").symlink_to(outside / "pyproject.toml")
    os.mkfifo(workspace / "package.json")
    findings = check_toolchains(SandboxConfig(), workspace)
    assert all(f.ok for f in findings)
    assert not any("declared but not here" in f.message for f in findings), [f.message for f in findings]
    declared = read_declared(workspace)
    assert (declared.python_version, declared.requires_python, declared.node) == (None, None, None)
    (workspace / ".python-version").unlink()
    (workspace / ".python-version").write_text("2.1\n")  # (the workspace's own file is read, as before)
    assert any(".python-version asks for 2.1" in f.message for f in check_toolchains(SandboxConfig(), workspace))


def test_env_dirs_must_stay_inside_the_workspace() -> None:
    for bad in (["../x"], ["/abs"], ["a/../b"], [""]):
        with pytest.raises(ConfigInvalid, match="env_dirs"):
            parse_config({"sandbox": {"env_dirs": bad}})


async def test_env_dirs_can_be_turned_off(workspace: Path, home: Path) -> None:
    require_binary("bwrap", "bubblewrap")
    body = make_body(workspace, home, {"sandbox": {"env_dirs": []}})
    try:
        async with Client(build_server(body)) as client:
            data = await run(client, "mkdir -p .venv && echo x > .venv/data.txt")
            assert ".venv/data.txt" in [c["path"] for c in data["changes"]]
    finally:
        body.close()
