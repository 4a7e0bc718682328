"""What the runner protects from the model: the task's own acceptance inputs, or by default the files and
directories its acceptance command names in the workspace, and the tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from agent_runner.runner import SETUP_INPUTS, acceptance_inputs, setup_inputs
from shared_protocol.brain import DEFAULT_ACCEPTANCE_INPUTS, Task


def task(acceptance: str, inputs: list[str] | None = None, setup: str = "") -> Task:
    return Task(
        id="task_1",
        title="t",
        description="",
        value_usd=0,
        state="claimed",
        created_at=datetime(2030, 1, 1, tzinfo=UTC),
        created_by="approver",
        acceptance=acceptance,
        acceptance_inputs=inputs,
        setup=setup,
    )


def test_by_default_the_files_the_command_names_and_the_tests_are_protected(tmp_path: Path) -> None:
    (tmp_path / "check.py").write_text("")
    (tmp_path / "fixtures").mkdir()
    (tmp_path / "we[i]rd*.sh").write_text("")
    (tmp_path.parent / "outside.py").write_text("")
    found = acceptance_inputs(
        task("python3 check.py --data=fixtures ../outside.py missing.py ./we[i]rd*.sh -q ."), tmp_path
    )
    assert found == ["check.py", "fixtures/**", "we[[]i]rd[*].sh", *DEFAULT_ACCEPTANCE_INPUTS]


def test_a_tasks_own_inputs_win_and_none_means_none(tmp_path: Path) -> None:
    (tmp_path / "check.py").write_text("")
    assert acceptance_inputs(task("python3 check.py", ["data/**"]), tmp_path) == ["data/**"]
    assert acceptance_inputs(task("python3 check.py", []), tmp_path) == []
    assert acceptance_inputs(task(""), tmp_path) == []
    assert acceptance_inputs(task("python3 'unclosed"), tmp_path) == list(DEFAULT_ACCEPTANCE_INPUTS)


def test_what_the_setup_reads_is_protected_too_since_the_check_is_built_with_it(tmp_path: Path) -> None:
    """The runner builds the check's environment with the task's setup: the files it names and the project's
    declared dependencies decide what the check runs with, so the model may not change them."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "setup.sh").write_text("")
    with_setup = task("pytest -q", setup="sh -c 'sh scripts/setup.sh && uv pip install -r requirements-dev.txt'")
    uv = ["uv.lock", "uv.toml"]  # (what `uv` reads by itself: TOOL_INPUTS)
    assert setup_inputs(with_setup, tmp_path) == ["scripts/setup.sh", *uv, *(p for p in SETUP_INPUTS if p not in uv)]
    found = acceptance_inputs(with_setup, tmp_path)
    assert found[: len(DEFAULT_ACCEPTANCE_INPUTS)] == list(DEFAULT_ACCEPTANCE_INPUTS)
    assert {"scripts/setup.sh", "pyproject.toml", "uv.lock", "requirements*.txt", "package-lock.json"} <= set(found)
    assert len(found) == len(set(found))
    assert setup_inputs(task("pytest -q"), tmp_path) == []
    assert acceptance_inputs(task("pytest -q", ["t.py"], setup="uv sync"), tmp_path) == ["t.py"]  # (the task's own)


def test_a_module_the_command_runs_with_dash_m_is_protected_whether_the_project_has_it_or_not(tmp_path: Path) -> None:
    """`python3 -m pytest` runs a `pytest.py` (or `pytest/__init__.py`) in the workspace root if there is one: the
    model may not make one; a module the project has already (`-m check`) is the judge the command runs: protected
    too, with its packages' `__init__` (run at import), on each import root (`src/`)."""
    (tmp_path / "check.py").write_text("")
    run = ["pytest.*", "pytest/__init__.*", "pytest/__main__.*"]
    found = acceptance_inputs(task("python3 -m pytest -q tests"), tmp_path)
    assert found[:3] == run and found[3:] == list(DEFAULT_ACCEPTANCE_INPUTS)
    assert acceptance_inputs(task("python3 -m check"), tmp_path)[:3] == [
        "check.*",
        "check/__init__.*",
        "check/__main__.*",
    ]
    (tmp_path / "src").mkdir()
    wrapped = acceptance_inputs(task("sh -c 'python3 -mmypkg.cli --x'"), tmp_path)
    assert wrapped[:5] == ["mypkg/cli.*", "mypkg/cli/__init__.*", "mypkg/cli/__main__.*", "mypkg.*", "mypkg/__init__.*"]
    assert wrapped[5:10] == [f"src/{p}" for p in wrapped[:5]]
    assert "git.*" not in acceptance_inputs(task("git commit -m 'a message'"), tmp_path), "not a module name"


def test_a_pytest_plugin_the_command_loads_by_name_is_protected(tmp_path: Path) -> None:
    """`pytest -p checks` imports `checks` (its file is part of the judge); `-p no:cacheprovider` loads nothing, and
    `-p` of another program (`mkdir -p out`) is no plugin."""
    found = acceptance_inputs(task("python3 -m pytest -p checks -pno:cacheprovider -p no:warnings -q"), tmp_path)
    assert [p for p in found if p.startswith("checks")] == ["checks.*", "checks/__init__.*"]
    assert not [p for p in found if p.startswith("no")]
    assert not [p for p in acceptance_inputs(task("sh -c 'mkdir -p out && make'"), tmp_path) if "out" in p]


def test_the_files_a_tool_the_command_runs_reads_are_protected(tmp_path: Path) -> None:
    """`make test` runs the Makefile's recipe, `npm test` package.json's script (through `.npmrc`'s shell), `just`
    its justfile: inputs of the command that runs the tool, wrapped or by path; a command that runs none of them
    protects none of them."""
    assert {"Makefile", "GNUmakefile", "**/*.mk"} <= set(acceptance_inputs(task("/usr/bin/make -j2 test"), tmp_path))
    for tool in ("npm test", "yarn test", "pnpm run test", "sh -c 'npx jest'"):
        assert {"package.json", ".npmrc", "package-lock.json"} <= set(acceptance_inputs(task(tool), tmp_path)), tool
    assert "justfile" in acceptance_inputs(task("just test"), tmp_path)
    plain = acceptance_inputs(task("python3 -m pytest -q"), tmp_path)
    assert not {"Makefile", "package.json", ".npmrc", "justfile"} & set(plain)


def test_the_test_runners_config_and_startup_hooks_are_inputs_by_default_anywhere_in_any_case(tmp_path: Path) -> None:
    """pytest finds its config upward from the tests it is given (`tests/pytest.ini` first), and Python runs a
    `sitecustomize` or a `.pth` from wherever they are on the path: protected wherever, however spelled; the code
    under test is not."""
    from body_mcp.policy import PathPolicy

    policy = PathPolicy(denied=(), read_only=()).with_acceptance_inputs(
        acceptance_inputs(task("python3 -m pytest -q tests"), tmp_path)
    )
    protected = [
        "PYTEST.INI", "sub/pytest.ini", ".pytest.ini", "pkg/tox.ini", "setup.cfg", "a/b/pyproject.toml",
        "noxfile.py", "src/sitecustomize.py", "usercustomize.py", "lib/evil.pth", "x/conftest.py",
    ]  # fmt: skip
    assert [p for p in protected if policy.classify_parts(tuple(p.split("/")))[0] != "acceptance_input"] == []
    free = ["app.py", "src/app/core.py", "setup.py", "README.md", "pytest_plugin_notes.txt"]
    assert [p for p in free if policy.classify_parts(tuple(p.split("/")))[0] != "none"] == []


def test_the_default_inputs_leave_the_code_under_test_and_new_modules_to_the_model(tmp_path: Path) -> None:
    """What the default inputs and the shadowing rule protect is the check, not the work: the model may edit the
    code under test, its non-test helpers, add modules of fresh names (in the root, in a package, beside the tests in
    a directory not named like one), and data files; each refusal that does come names its rule."""
    from body_mcp.policy import PathPolicy, acceptance_input_message, import_shadow

    for rel in ("app.py", "spec/test_app.py", "src/pkg/__init__.py", "src/pkg/util.py", "pkg/helpers.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    inputs = acceptance_inputs(task("python3 -m pytest -q"), tmp_path)
    env = tmp_path / "env"
    env.mkdir()
    policy = PathPolicy(denied=(), read_only=()).with_acceptance_inputs(
        inputs, shadow=import_shadow(tmp_path, inputs, env)
    )
    for rel in (
        "app.py",
        "newmod.py",
        "src/pkg/util.py",
        "src/pkg/app.py",
        "pkg/helpers.py",
        "spec/fixtures_more.py",
        "docs/tests.md",
        "src/pkg/testing_utils.py",
        "data/contest.json",
    ):
        assert policy.classify_parts(tuple(rel.split("/"))) == ("none", None), rel
    refused = {
        "pkg/tests/helpers.py": "**/tests/**",
        "testing/data.json": "**/testing/**",
        "x.dist-info/entry_points.txt": "**/*.dist-info/**",
        ".python-version": ".python-version",
        "spec/app.py": "import:app=app.py",
        "app/__init__.py": "import:app=app.py",
        "src/json.py": "import:json",
    }
    for rel, why in refused.items():
        level, pattern = policy.classify_parts(tuple(rel.split("/")))
        assert (level, pattern) == ("acceptance_input", why), rel
        assert (why.split("=")[0].removeprefix("import:") if why.startswith("import:") else why) in (
            acceptance_input_message(rel, pattern)
        ), rel
