"""A model may not add a module that shadows one the acceptance check's Python imports (`json.py` next to a
`check.py` that imports json, `pytest.py` for `python3 -m pytest`): refused `acceptance_input`, naming the module,
audited, whatever tool makes it (file tools, a move, a command's staged changes, a symlink); the project's own
modules stay the model's to edit. And a real test run's caches (`.pytest_cache/`, `__pycache__/`) are dropped from
a command's changes, not refused. Real body over stdio, real bubblewrap sandbox, a real git repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from shared_protocol.config import parse_config, render_config

from ..cli.inprocess import run_swarm
from ..conftest import require_binary
from .agent_helpers import AGENT, MODEL, model_meta
from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio

TOOLS = ["read_text_file", "write_file", "edit_file", "move_file", "create_directory", "run_command"]
CHECK = "import json\nimport app\n\nraise SystemExit(0 if app.main() == 2 else 1)\n"
CHEAT = "raise SystemExit(0)\n"


def _params(workspace: Path, home: Path, config: Path, *protect: str) -> StdioServerParameters:
    env = {**os.environ, "SWARM_HOME": str(home)}
    env.pop("SWARM_AGENT", None)
    args = ["-m", "swarm_cli", "body", "--workspace", str(workspace), "--agent", "w1", "--config", str(config)]
    for pattern in protect:
        args += ["--protect", pattern]
    return StdioServerParameters(command=sys.executable, args=args, env=env)


def _git(repo: Path, *args: str) -> None:
    argv = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args]
    subprocess.run(argv, cwd=repo, capture_output=True, check=True)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    config = parse_config({"models": {"fast": MODEL}, "agents": [{**AGENT, "tools": TOOLS}]})
    path = tmp_path / "swarm.toml"
    path.write_text(render_config(config))
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository whose check imports json; the project has a module of its own named like a stdlib one
    (`queue.py`, tracked), and a `src/` import root."""
    repo = tmp_path / "repo"
    (repo / "src" / "pkg").mkdir(parents=True)
    (repo / "app.py").write_text("def main():\n    return 1\n")
    (repo / "queue.py").write_text("ITEMS = []\n")
    (repo / "check.py").write_text(CHECK)
    (repo / "src" / "pkg" / "__init__.py").write_text("")
    (repo / "helper").mkdir()
    (repo / "helper" / "__init__.py").write_text("")
    _git(repo, "init", "--quiet")
    _git(repo, "add", "--all")
    _git(repo, "commit", "--quiet", "-m", "base")
    return repo


async def test_a_model_cannot_add_a_module_that_shadows_one_the_check_imports(
    home: Path, repo: Path, config_file: Path
) -> None:
    async with Client(_params(repo, home, config_file, "check.py")) as client:
        model = model_meta()
        attempts = [
            ("write_file", {"path": "json.py", "content": CHEAT}, "json"),
            ("write_file", {"path": "pytest.py", "content": CHEAT}, "pytest"),
            ("write_file", {"path": "json/__init__.py", "content": CHEAT}, "json"),
            ("write_file", {"path": "src/unittest.py", "content": CHEAT}, "unittest"),
            ("write_file", {"path": "sitecustomize.py", "content": CHEAT}, "sitecustomize"),
            ("write_file", {"path": "os.pyc", "content": CHEAT}, "os"),
            ("move_file", {"source": "app.py", "destination": "json.py"}, "json"),
            ("move_file", {"source": "helper", "destination": "json"}, "json"),
        ]
        for tool, arguments, module in attempts:
            result = await client.call_tool(tool, {**arguments, "rationale": "make it pass"}, meta=model)
            data = refused(result, "acceptance_input")
            assert f"shadow the module '{module}'" in data["message"], data
        # The project's own modules are the model's to change, named like a stdlib module or not.
        ok(
            await client.call_tool(
                "write_file", {"path": "queue.py", "content": "ITEMS = [1]\n", "rationale": "x"}, meta=model
            )
        )
        ok(
            await client.call_tool(
                "write_file",
                {"path": "app.py", "content": "def main():\n    return 2\n", "rationale": "fix"},
                meta=model,
            )
        )
        # The runner's own calls are not the model's: not refused.
        ok(await call(client, "write_file", path="json.py", content="# the runner's\n"))
    assert (repo / "json.py").read_text() == "# the runner's\n"
    assert not (repo / "json").exists() and not (repo / "pytest.py").exists() and (repo / "helper").is_dir()
    assert (repo / "app.py").read_text() == "def main():\n    return 2\n"
    done = run_swarm(
        ["audit", "tail", "--agent", "w1"], {**os.environ, "SWARM_HOME": str(home), "SWARM_CONFIG": str(config_file)}
    )
    assert done.returncode == 0, done.stderr
    tail = done.stdout
    assert tail.count("acceptance_input") == len(attempts), tail


async def test_a_models_command_that_adds_a_shadowing_module_applies_nothing(
    home: Path, repo: Path, config_file: Path
) -> None:
    require_binary("bwrap", "bubblewrap")
    scripts = {
        "json": "printf 'raise SystemExit(0)\\n' > json.py; echo ok > notes.txt",
        "pytest": "mkdir -p pkg2 && touch pkg2/__init__.py && mv pkg2 pytest",
        "json ": "ln -s helper json",  # (a symlink to a package, named like a module)
        "unittest": "cp app.py src/unittest.py",
    }
    async with Client(_params(repo, home, config_file, "check.py")) as client:
        for module, script in scripts.items():
            argv = ["/bin/sh", "-c", script]
            result = await client.call_tool("run_command", {"argv": argv, "rationale": "green"}, meta=model_meta())
            assert result.is_error and result.structured_content is not None, result
            data = result.structured_content["refusal"]
            assert data["code"] == "acceptance_input", data
            assert f"shadow the module '{module.strip()}'" in data["message"], data
        # Changing the project's own module (tracked, a stdlib name) in a command is not shadowing.
        done = ok(
            await client.call_tool(
                "run_command",
                {"argv": ["/bin/sh", "-c", "echo 'ITEMS = [2]' > queue.py"], "rationale": "x"},
                meta=model_meta(),
            )
        )
        assert done["applied"] is True
    assert not (repo / "notes.txt").exists(), "nothing of a refused set is applied"
    for name in ("json.py", "json", "pytest", "src/unittest.py"):
        assert not (repo / name).exists() and not (repo / name).is_symlink(), name
    assert (repo / "queue.py").read_text() == "ITEMS = [2]\n"


RUNNER = """\
import os, sys, importlib
# What `python3 -m pytest` leaves behind: its cache (with a .gitignore of its own) and bytecode.
os.makedirs(".pytest_cache/v/cache", exist_ok=True)
open(".pytest_cache/.gitignore", "w").write("# Created by pytest automatically.\\n*\\n")
open(".pytest_cache/CACHEDIR.TAG", "w").write("Signature: 8a477f597d28d172789f06886806bc55\\n")
open(".pytest_cache/v/cache/lastfailed", "w").write("{}\\n")
os.makedirs(".mypy_cache", exist_ok=True)
open(".mypy_cache/.gitignore", "w").write("*\\n")
os.symlink("../check.py", ".pytest_cache/link")
sys.path.insert(0, ".")
import app
sys.exit(0 if app.main() == 1 else 1)
"""


async def test_a_test_runs_caches_are_dropped_not_refused(home: Path, repo: Path, config_file: Path) -> None:
    """Running the tests in the sandbox leaves `.pytest_cache/.gitignore` (a read-only name) and `__pycache__/`:
    dropped from the command's changes (never applied, never counted), so the run is applied, not refused; a
    symlink inside a cache goes nowhere either."""
    require_binary("bwrap", "bubblewrap")
    (repo / "tests").mkdir()
    (repo / "tests" / "run.py").write_text(RUNNER)
    argv = ["/bin/sh", "-c", "python3 tests/run.py && echo 'x = 1' > src/pkg/new.py"]
    async with Client(_params(repo, home, config_file, "check.py", "tests/**")) as client:
        done = ok(await client.call_tool("run_command", {"argv": argv, "rationale": "test"}, meta=model_meta()))
        assert done["exit_code"] == 0, done
        assert done["applied"] is True, done
        categories = {c["path"]: c["category"] for c in done["changes"]}
        assert categories["src/pkg/new.py"] == "counted", categories
        dropped = [p for p, c in categories.items() if c == "discarded"]
        assert ".pytest_cache/.gitignore" in dropped and ".pytest_cache/link" in dropped, categories
        assert any(p.startswith("__pycache__") for p in dropped), categories
        # The runner's own re-run of a check that runs the tests: not refused either (its exit code decides), and
        # with only caches changed there is nothing to apply.
        ran = ok(await call(client, "run_command", argv=["python3", "tests/run.py"]))
        assert ran["exit_code"] == 0 and ran["applied"] is False and ran.get("refusal") is None, ran
    assert (repo / "src" / "pkg" / "new.py").read_text() == "x = 1\n"
    for cache in (".pytest_cache", ".mypy_cache", "__pycache__"):
        assert not (repo / cache).exists(), cache


def _python_with_pytest() -> str | None:
    """A pyenv version of this machine whose site-packages has pytest (a workspace's `.python-version` picks it
    as the sandbox's `python3`; the system's has no pytest here)."""
    versions = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = sorted(versions.glob("*/lib/python3*/site-packages/pytest/__init__.py")) if versions.is_dir() else []
    return found[0].relative_to(versions).parts[0] if found else None


async def test_a_real_pytest_run_in_the_sandbox_is_applied(home: Path, repo: Path, config_file: Path) -> None:
    """`python3 -m pytest` itself, where the sandbox's Python has pytest: its cache does not refuse the run."""
    require_binary("bwrap", "bubblewrap")
    (repo / "queue.py").unlink()  # (the project's own queue.py shadows the one pytest's logging imports: as it would)
    version = _python_with_pytest()
    if version is not None:
        (repo / ".python-version").write_text(version + "\n")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_app.py").write_text("import app\n\n\ndef test_main():\n    assert app.main() == 1\n")
    async with Client(_params(repo, home, config_file, "tests/**")) as client:
        probe = ok(await call(client, "run_command", argv=["python3", "-c", "import pytest"]))
        if probe["exit_code"] != 0:
            pytest.skip("no python3 with pytest for the sandbox (the runner above makes the same files)")
        argv = ["python3", "-m", "pytest", "-q", "-p", "no:randomly", "tests"]
        done = ok(await client.call_tool("run_command", {"argv": argv, "rationale": "test"}, meta=model_meta()))
        assert done["exit_code"] == 0 and done["applied"] is True, done
        assert any(c["path"] == ".pytest_cache/.gitignore" for c in done["changes"]), done["changes"]
    assert not (repo / ".pytest_cache").exists()


async def test_a_model_cannot_add_a_second_copy_of_a_project_module_on_the_import_path(
    home: Path, repo: Path, config_file: Path
) -> None:
    """The project's own modules can be shadowed too: a package `app/__init__.py` beats the project's `app.py` in the
    same directory, and `spec/app.py` beside tests in `spec/` (no `__init__.py`: pytest puts `spec/` first on
    `sys.path`) is what `import app` in those tests loads. Refused `acceptance_input` naming the project's module
    and its file, whatever tool makes it; editing `app.py`, a module of a fresh name (in the root or beside the
    tests), or a submodule of a package stays the model's work."""
    require_binary("bwrap", "bubblewrap")
    (repo / "spec").mkdir()
    (repo / "spec" / "test_app.py").write_text("import app\n\n\ndef test_main():\n    assert app.main() == 2\n")
    _git(repo, "add", "--all")
    _git(repo, "commit", "--quiet", "-m", "tests in spec/")
    fixed = "def main():\n    return 2\n"
    async with Client(_params(repo, home, config_file, "check.py")) as client:
        model = model_meta()
        for path in ("app/__init__.py", "spec/app.py", "src/app.py", "app.pyc"):
            result = await client.call_tool(
                "write_file", {"path": path, "content": fixed, "rationale": "x"}, meta=model
            )
            data = refused(result, "acceptance_input")
            assert "shadow the project's module 'app' ('app.py')" in data["message"], data
        argv = ["/bin/sh", "-c", "mkdir app && cp app.py app/__init__.py"]
        result = await client.call_tool("run_command", {"argv": argv, "rationale": "x"}, meta=model)
        assert result.is_error and result.structured_content is not None, result
        data = result.structured_content["refusal"]
        assert data["code"] == "acceptance_input" and "project's module 'app'" in data["message"], data
        for path in ("app.py", "newmod.py", "spec/fixtures_extra.py", "src/pkg/app.py"):  # (4: 5 files need approval)
            ok(await client.call_tool("write_file", {"path": path, "content": fixed, "rationale": "x"}, meta=model))
    assert not (repo / "app").exists() and not (repo / "spec" / "app.py").exists()
    assert (repo / "app.py").read_text() == fixed and (repo / "spec" / "fixtures_extra.py").exists()
