"""A small real Python project for the whole-flow tests and the benchmark: a git repository whose code needs a
dependency (`swarm-tinypkg`) and whose tests need pytest, both served by a package index on 127.0.0.1 that the
test starts (`tests/fakes/pkgindex.py`: a wheel built by hand, and pytest with what it requires packed from this
interpreter's installed files: the machine has no internet).

    with project_index(tmp) as index:
        repo = make_project(tmp / "calc", index.port)
        SANDBOX_TOML.format(port=index.port)            # [sandbox] allowing the index's pinned name

The project's `total()` is wrong (it adds one too many); its tests say so. `slow()` runs for about a second of CPU
so that a test run is long enough to measure the sandbox's overhead on it (the benchmark's); the tests make it
instant (`slow_rounds=0`): they check what the tests say, not how long they take.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.fakes.pkgindex import installed_wheels, pure_wheel, serve_index
from tests.fakes.static_http import Site

INDEX_HOST = "pkgs.test"
DEPENDENCY = "swarm-tinypkg"
GREETING = "hello from the local index"
SANDBOX_TOML = (
    '\n[sandbox]\nallowed_domains = ["{host}"]\npinned_hosts = {{"{host}" = "127.0.0.1:{port}"}}\nmax_timeout_s = 900\n'
)
SETUP = "sh -c 'uv venv -q .venv && uv pip install -q -r requirements.txt'"
"""The project's setup: a virtualenv (the task's env dir) and the requirements, from the index the file names."""
TESTS = "python -m pytest -q -p no:cacheprovider tests"
"""Its tests (pytest's cache would write `.pytest_cache/.gitignore`, a protected name)."""
BUGGY = "return sum(values) + 1"
FIXED = "return sum(values)"

CODE = f'''"""A small calculator that greets."""

from swarm_tinypkg import GREETING


def total(values: list[int]) -> int:
    {BUGGY}


def greeting() -> str:
    return GREETING


def slow(rounds: int) -> int:
    """About a second of work for `rounds` = 1: a test run long enough to time."""
    found = 0
    for number in range(rounds * 5_000_000):
        found ^= number * 7
    return found
'''
TEST_CODE = f"""import calc


def test_total():
    assert calc.total([1, 2, 3]) == 6


def test_greeting_comes_from_the_dependency():
    assert calc.greeting() == {GREETING!r}


def test_slow_is_deterministic():
    assert calc.slow({{rounds}}) == calc.slow({{rounds}})
"""


def git(repo: Path, *args: str) -> str:
    argv = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args]
    return subprocess.run(argv, cwd=repo, capture_output=True, text=True, check=True).stdout


def make_project(repo: Path, port: int, *, host: str = INDEX_HOST, slow_rounds: int = 1) -> Path:
    """The project, committed on `main` (a clean clone: nothing installed, no `.venv`); its `test_slow_*` runs
    `slow(slow_rounds)` twice (about two seconds of CPU per test run for 1, none for 0)."""
    repo.mkdir(parents=True)
    (repo / "pyproject.toml").write_text(
        f'[project]\nname = "calc"\nversion = "0.1.0"\nrequires-python = ">=3.11"\ndependencies = ["{DEPENDENCY}"]\n'
        '\n[tool.pytest.ini_options]\npythonpath = ["."]\n'
    )
    (repo / "requirements.txt").write_text(
        f"--index-url http://{host}/simple/\n--trusted-host {host}\n{DEPENDENCY}\npytest\n"
    )
    (repo / ".gitignore").write_text("__pycache__/\n.venv/\n")
    (repo / "calc.py").write_text(CODE)
    (repo / "tests").mkdir()
    (repo / "tests" / "test_calc.py").write_text(TEST_CODE.format(rounds=slow_rounds))
    git(repo, "init", "--quiet", "-b", "main")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "calc: total() and its tests")
    return repo


@contextmanager
def project_index(directory: Path) -> Iterator[Site]:
    """The index serving the project's dependency and pytest (with what pytest needs)."""
    wheels = directory / "wheels"
    wheels.mkdir(exist_ok=True)
    served = [
        pure_wheel(wheels, DEPENDENCY, {"swarm_tinypkg/__init__.py": f"GREETING = {GREETING!r}\n"}),
        *installed_wheels(wheels, "pytest"),
    ]
    with serve_index(served) as index:
        yield index
