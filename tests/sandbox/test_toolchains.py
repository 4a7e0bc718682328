# pyright: strict
"""Toolchains and the task's environment in the sandbox: found, chosen by the workspace, the `python` link,
writable mounts outside the staged change set (real bubblewrap; skipped loudly without it)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from sandbox import (
    SANDBOX_BIN_DIR,
    SANDBOX_CACHE_DIR,
    InvalidSandboxSpec,
    ToolchainNotFound,
    WritableMount,
    plan_toolchains,
    read_declared,
    task_environment,
)
from sandbox._bwrap_backend import BwrapBackend

from ._support import make_spec, sh, snapshot

pytestmark = pytest.mark.anyio

SYSTEM_PYTHON = Path("/usr/bin/python3")


def fake_pyenv(root: Path, *versions: str) -> Path:
    """A pyenv root whose versions hold an executable `bin/python3` (never run: detection reads names only)."""
    for version in versions:
        bin_dir = root / "versions" / version / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "python3").write_text("#!/bin/sh\n")
        (bin_dir / "python3").chmod(0o755)
    return root


def test_the_workspace_python_version_file_chooses_the_newest_matching_pyenv_version(tmp_path: Path) -> None:
    pyenv = fake_pyenv(tmp_path / "pyenv", "3.12.1", "3.12.4", "3.13.0")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / ".python-version").write_text("3.12\n")
    plan = plan_toolchains(ws, pyenv=pyenv)
    assert plan.python is not None and plan.python.version == "3.12.4"
    assert plan.commands["python"] == plan.commands["python3"] == pyenv / "versions/3.12.4/bin/python3"
    assert plan.bin_dirs == [pyenv / "versions/3.12.4/bin"]
    # Every pyenv version is exposed read-only, not put on PATH.
    assert {pyenv / "versions" / v for v in ("3.12.1", "3.12.4", "3.13.0")} <= set(plan.expose)


def test_requires_python_picks_an_interpreter_that_satisfies_it(tmp_path: Path) -> None:
    pyenv = fake_pyenv(tmp_path / "pyenv", "3.8.18", "3.99.1")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "pyproject.toml").write_text('[project]\nname = "x"\nrequires-python = ">=3.99,<4"\n')
    plan = plan_toolchains(ws, pyenv=pyenv)
    assert plan.python is not None and plan.python.version == "3.99.1"
    assert read_declared(ws).requires_python == ">=3.99,<4"


def test_a_declared_version_this_machine_lacks_is_a_note_not_an_error(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / ".python-version").write_text("2.1\n")
    (ws / "package.json").write_text('{"engines": {"node": ">=18"}}')
    plan = plan_toolchains(ws, pyenv=tmp_path / "no-pyenv")
    assert any(".python-version" in note for note in plan.notes)
    assert read_declared(ws).node == ">=18"
    if SYSTEM_PYTHON.exists():
        assert plan.python is not None and plan.python.executable == SYSTEM_PYTHON


def test_a_configured_python_this_machine_lacks_is_an_error_naming_it(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    with pytest.raises(ToolchainNotFound) as version:
        plan_toolchains(ws, python="3.99", pyenv=tmp_path / "no-pyenv")
    with pytest.raises(ToolchainNotFound) as path:
        plan_toolchains(ws, python=str(tmp_path / "nowhere" / "python3"), pyenv=tmp_path / "no-pyenv")
    assert version.value.name == path.value.name == "python"


def test_the_task_environment_lives_outside_the_workspace_with_caches_of_its_own(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "node_modules").mkdir(parents=True)
    (ws / "node_modules" / "x").mkdir()
    (ws / "link").symlink_to("/etc")
    env = task_environment(
        workspace=ws, env_root=tmp_path / "env", cache_root=tmp_path / "cache", env_dirs=[".venv", "link"]
    )
    targets = {m.target: m.source for m in env.mounts}
    assert targets[ws / ".venv"] == (tmp_path / "env" / ".venv").resolve()
    assert targets[SANDBOX_CACHE_DIR] == (tmp_path / "cache").resolve()
    assert env.skipped == ["link"]  # a symlink in the workspace is never mounted over (bwrap would follow it)
    assert {env.variables[v] for v in ("UV_CACHE_DIR", "PIP_CACHE_DIR", "npm_config_cache")} == {
        str(SANDBOX_CACHE_DIR / name) for name in ("uv", "pip", "npm")
    }
    assert env.variables["UV_PROJECT_ENVIRONMENT"] == str(ws / ".venv")
    assert "VIRTUAL_ENV" not in env.variables  # not before the environment exists
    with pytest.raises(InvalidSandboxSpec):
        task_environment(workspace=ws, env_root=tmp_path / "env", cache_root=tmp_path / "c", env_dirs=["../up"])


@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="needs the system's python3 (apt-get install python3-venv)")
async def test_python_and_a_venv_work_in_the_sandbox_and_the_venv_lands_in_the_env_dir(
    backend: BwrapBackend, ws: Path, tmp_path: Path
) -> None:
    env_dir, cache = tmp_path / "env" / "venv", tmp_path / "cache"
    env_dir.mkdir(parents=True)
    cache.mkdir()
    (ws / ".venv" / "lib").mkdir(parents=True)
    (ws / ".venv" / "lib" / "cacert.pem").write_text("the user's own venv: never seen, never touched\n")
    before = snapshot(ws)
    script = (
        "python -c 'import sys; print(sys.version_info[0])'\n"
        "test ! -e .venv/lib/cacert.pem\n"  # the workspace's own .venv is covered by the env dir
        "python3 -m venv --without-pip .venv\n"  # (pip's bootstrap, ~4.7 s of CPU, is not what is checked here)
        ".venv/bin/python -c 'import sys; print(sys.prefix)'\n"
        "echo cached > /run/swarm/cache/probe\n"
    )
    spec = sh(
        ws,
        script,
        env={"PATH": f"{SANDBOX_BIN_DIR}:/usr/bin:/bin", "LANG": "C.UTF-8"},
        commands={"python": SYSTEM_PYTHON, "python3": SYSTEM_PYTHON},
        writable_mounts=[
            WritableMount(source=env_dir.resolve(), target=ws / ".venv"),
            WritableMount(source=cache.resolve(), target=SANDBOX_CACHE_DIR),
        ],
        # A protected file under the mount is the workspace's, not the env dir's: nothing to hide there.
        hidden_paths=[".env", ".venv/lib/cacert.pem"],
        timeout_s=120,
    )
    async with await backend.run(spec) as staged:
        assert staged.result.exit_code == 0, staged.result.stderr
        assert staged.result.stdout.splitlines() == ["3", str(ws / ".venv")]
        assert list(staged.changes) == []  # the venv is not a change to the workspace
    assert (env_dir / "pyvenv.cfg").is_file() and (env_dir / "bin" / "python").is_symlink()
    assert (cache / "probe").read_text() == "cached\n"
    assert not os.path.lexists(tmp_path / "env" / "venv" / "lib" / "cacert.pem")
    assert snapshot(ws) == before


async def test_writable_mounts_that_could_escape_are_refused(backend: BwrapBackend, ws: Path, tmp_path: Path) -> None:
    source = tmp_path / "env"
    source.mkdir()
    (ws / "out").symlink_to("/etc")
    base = sh(ws, "true")
    bad = [
        WritableMount(source=source.resolve(), target=ws / "out"),  # bwrap would follow the symlink
        WritableMount(source=source.resolve(), target=Path("/usr/lib/x")),  # neither workspace nor /run/swarm
        WritableMount(source=source.resolve(), target=ws),  # the workspace itself
        WritableMount(source=ws / "src", target=ws / ".venv"),  # a source inside the workspace
        WritableMount(source=source.resolve(), target=SANDBOX_BIN_DIR / "x"),
    ]
    for mount in bad:
        with pytest.raises(InvalidSandboxSpec):
            await backend.run(replace(base, writable_mounts=[mount]))
    with pytest.raises(InvalidSandboxSpec):
        await backend.run(replace(base, commands={"python": tmp_path / "not-exposed"}))
    with pytest.raises(InvalidSandboxSpec):
        await backend.run(replace(base, commands={"../python": SYSTEM_PYTHON}))


async def test_a_passed_descriptor_reaches_the_command_under_its_number(backend: BwrapBackend, ws: Path) -> None:
    """`pass_fds`: the command writes to the caller's pipe as it runs (the body's pytest reporter does); the caller
    keeps its end. Stdio and non-numbers are refused."""
    read_fd, write_fd = os.pipe()
    try:
        argv = [str(SYSTEM_PYTHON), "-c", f"import os; os.write({write_fd}, b'reported\\n')"]
        async with await backend.run(make_spec(ws, argv, pass_fds=[write_fd])) as staged:
            assert staged.result.exit_code == 0, staged.result.stderr
        os.close(write_fd)
        write_fd = -1
        assert os.read(read_fd, 100) == b"reported\n"
        assert os.read(read_fd, 100) == b"", "no process of the run holds the pipe once it has ended"
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    for bad in ([1], [True], [-1]):
        with pytest.raises(InvalidSandboxSpec, match="pass_fds"):
            await backend.run(sh(ws, "true", pass_fds=bad))
