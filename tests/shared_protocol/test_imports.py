"""`shared_protocol.imports`: which workspace files would shadow a module the acceptance check's Python imports,
read from real directories (the system's interpreters, a workspace on disk), never by running an interpreter."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from shared_protocol.imports import (
    import_roots,
    interpreter_module_names,
    library_dirs,
    module_of,
    modules_in,
    portions_at,
    prepended_test_roots,
    project_modules,
    shadowed_module,
    shadowing_files,
    venv_site_dirs,
)

NAMES = frozenset({"json", "pytest", "yaml"})


def test_a_module_file_or_package_init_right_in_an_import_root_shadows() -> None:
    roots = ((), ("src",))
    assert shadowed_module(("json.py",), roots, NAMES) == "json"
    assert shadowed_module(("pytest.pyc",), roots, NAMES) == "pytest"
    assert shadowed_module(("yaml.cpython-311-x86_64-linux-gnu.so",), roots, NAMES) == "yaml"
    assert shadowed_module(("json", "__init__.py"), roots, NAMES) == "json"
    assert shadowed_module(("src", "json.py"), roots, NAMES) == "json"
    assert shadowed_module(("lib", "json.py"), roots, NAMES) is None, "not on the import path"
    assert shadowed_module(("json", "decoder.py"), roots, NAMES) is None, "a submodule of nothing importable"
    assert shadowed_module(("json",), roots, NAMES) is None, "a bare directory is a namespace package: it yields"
    assert shadowed_module(("json.txt",), roots, NAMES) is None
    assert shadowed_module(("app.py",), roots, NAMES) is None
    assert shadowed_module(("sitecustomize.py",), roots, NAMES) == "sitecustomize", "start-up hooks always"
    assert shadowed_module(("JSON.py",), roots, NAMES) is None, "imports are case-sensitive"


def test_module_of_names_what_an_import_loads() -> None:
    assert [module_of(n) for n in ("a.py", "a.pyw", "_a.abi3.so", "a.pyd", "a.pth", "a-b.py", "1a.py")] == [
        "a",
        "a",
        "_a",
        "a",
        None,
        None,
        None,
    ]


def test_the_interpreters_names_are_read_from_its_installation() -> None:
    names = interpreter_module_names()
    assert {"json", "os", "unittest", "sitecustomize"} - names <= {"sitecustomize"}
    assert set(sys.stdlib_module_names) <= names
    assert "app" not in names and "check" not in names
    python = Path(sys.base_prefix) / "bin" / "python3"
    found = library_dirs(python)
    assert found and all(d.is_dir() for d in found)
    assert library_dirs(Path("/nonexistent/python3")) == []


def test_a_site_directory_offers_its_modules_packages_and_distributions(tmp_path: Path) -> None:
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    (site / "pkg").mkdir(parents=True)
    (site / "__pycache__").mkdir()
    (site / "single.py").write_text("")
    (site / "_native.cpython-311-x86_64-linux-gnu.so").write_text("")
    (site / "dist-1.0.dist-info").mkdir()
    (site / "dist-1.0.dist-info" / "top_level.txt").write_text("other\n")
    assert venv_site_dirs(tmp_path / "venv") == [site]
    assert modules_in(site) == {"pkg", "single", "_native", "other"}
    assert {"pkg", "single", "other"} <= interpreter_module_names(site_dirs=[site])


def test_import_roots_are_the_root_src_the_scripts_dirs_and_pytests_pythonpath(tmp_path: Path) -> None:
    assert import_roots(tmp_path) == ((),)
    (tmp_path / "src").mkdir()
    (tmp_path / "pytest.ini").write_text("[pytest]\npythonpath = lib extra/dir\n")
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["pkgs"]\n')
    (tmp_path / "setup.cfg").write_text("[tool:pytest]\npythonpath = ../outside\n")
    roots = import_roots(tmp_path, ["scripts/check.py", "tests/**", "**/conftest.py", "we[*]rd/x.py"])
    assert roots == ((), ("src",), ("scripts",), ("lib",), ("extra", "dir"), ("pkgs",))


def test_unreadable_config_declares_nothing(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("not an ini [")
    (tmp_path / "pyproject.toml").write_text("not = toml = at all")
    assert import_roots(tmp_path) == ((),)


def test_shadowing_files_are_found_by_listing_the_roots(tmp_path: Path) -> None:
    (tmp_path / "json.py").write_text("")
    (tmp_path / "app.py").write_text("")
    (tmp_path / "pytest").mkdir()
    (tmp_path / "pytest" / "__init__.py").write_text("")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    os.symlink("pkg", tmp_path / "yaml")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "json.py").write_text("")
    assert shadowing_files(tmp_path, [()], NAMES) == {"json.py": "json", "pytest/__init__.py": "pytest", "yaml": "yaml"}
    assert shadowing_files(tmp_path, [("scripts",), ("missing",)], NAMES) == {"scripts/json.py": "json"}


def _touch(root: Path, *paths: str) -> None:
    for rel in paths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")


def test_test_directories_pytest_puts_first_are_import_roots(tmp_path: Path) -> None:
    """pytest's `prepend` mode inserts, for each test file, the first directory above it without an `__init__.py`:
    `spec/` for `spec/test_a.py`, `pkg` for `pkg/tests/test_b.py` (a package in a namespace `pkg/`), the root for
    `lib/tests/x_test.py` when `lib/` and `lib/tests/` are packages. Hidden directories, virtualenvs and
    `node_modules` are not test directories; `tests=False` leaves them out."""
    _touch(tmp_path, "spec/test_a.py", "pkg/tests/__init__.py", "pkg/tests/test_b.py", "lib/__init__.py")
    _touch(tmp_path, "lib/tests/__init__.py", "lib/tests/x_test.py", "conftest.py", "checks/conftest.py")
    _touch(tmp_path, ".tox/py/test_x.py", "node_modules/m/test_y.py", "venv/pyvenv.cfg", "venv/lib/test_z.py")
    _touch(tmp_path, "docs/testing.py", "scripts/tests.py")
    assert prepended_test_roots(tmp_path) == [(), ("checks",), ("pkg",), ("spec",)]
    assert import_roots(tmp_path) == ((), ("checks",), ("pkg",), ("spec",))
    assert import_roots(tmp_path, tests=False) == ((),)


def test_a_module_the_project_offers_twice_on_the_import_path(tmp_path: Path) -> None:
    """`project_modules`: each top-level module the roots offer, with every path that offers it (a module, a
    package's `__init__`, a namespace directory holding Python); one offered twice is shadowed by one of them."""
    _touch(tmp_path, "app.py", "app/__init__.py", "spec/app.py", "spec/test_app.py", "util/__init__.py")
    _touch(tmp_path, "scripts/run.py", "docs/index.md", "data/sub/x.json", "ns/inner/__init__.py", "__init__.py")
    found = project_modules(tmp_path, [(), ("spec",)])
    assert sorted(found["app"]) == ["app.py", "app/__init__.py", "spec/app.py"]
    assert found["util"] == ["util/__init__.py"] and found["scripts"] == ["scripts"] and found["ns"] == ["ns"]
    assert "docs" not in found and "data" not in found and "__init__" not in found
    twice = {m for m, paths in found.items() if len(paths) > 1}
    assert shadowing_files(tmp_path, [(), ("spec",)], NAMES | twice) == {
        "app.py": "app",
        "app/__init__.py": "app",
        "spec/app.py": "app",
    }


def test_a_portion_of_an_installed_namespace_package_is_found(tmp_path: Path) -> None:
    """A site directory's namespace package (`nsp/`, no `__init__`) offers `nsp/real`; a regular package offers no
    portions. A workspace `nsp/real.py` or anything under `nsp/real/` comes before it (`nsp.real`); a new portion
    `nsp/mine/` shadows nothing installed, and a module inside a regular package is no portion."""
    site = tmp_path / "site"
    _touch(site, "nsp/real/__init__.py", "nsp/other.py", "regular/__init__.py", "regular/sub/__init__.py")
    assert modules_in(site) == {"nsp", "nsp/real", "nsp/other", "regular"}
    names = frozenset({"nsp/real", "nsp/other"})
    assert portions_at(("nsp", "real", "__init__.py"), [()]) == [("nsp", "real")]
    assert portions_at(("nsp", "__init__.py"), [()]) == [], "a regular package: modules_at's"
    assert shadowed_module(("nsp", "real", "deep", "m.py"), [()], names) == "nsp.real"
    assert shadowed_module(("nsp", "other.py"), [()], names) == "nsp.other"
    assert shadowed_module(("src", "nsp", "other.py"), [(), ("src",)], names) == "nsp.other"
    assert shadowed_module(("nsp", "mine", "__init__.py"), [()], names) is None
    assert shadowed_module(("nsp", "real.txt"), [()], names) is None
    workspace = tmp_path / "ws"
    _touch(workspace, "nsp/real/__init__.py", "nsp/real/sub/m.py", "nsp/mine.py", "nsp/real/README.md")
    assert shadowing_files(workspace, [()], names) == {
        "nsp/real/__init__.py": "nsp.real",
        "nsp/real/sub/m.py": "nsp.real",
    }
