"""Adversarial review of #17 (third pass): the module-shadowing rule (`shared_protocol.imports`, the body's
`import_shadow`) against what Python's import system really does. Each case runs the real interpreter on a real
directory tree, so the test shows the shadowing happens before asserting the rule sees it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from body_mcp.policy import PathPolicy, import_shadow
from shared_protocol.imports import import_roots, interpreter_module_names, shadowing_files


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def imported_value(workspace: Path, site: Path, module: str) -> str:
    """What `module.VALUE` is for a `python3 -c` run in `workspace` (cwd first on sys.path) with `site` installed."""
    code = f"import {module} as m; print(m.VALUE)"
    done = subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path.append({str(site)!r}); {code}"],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_review17c_a_namespace_portion_in_the_workspace_shadows_an_installed_namespace_package(
    tmp_path: Path,
) -> None:
    """Was a hole (medium: needs a check that imports a namespace package, e.g. google.protobuf, zope.*,
    sphinxcontrib.*): namespace portions merge in sys.path order, so a workspace `nsp/real/__init__.py` (no
    `nsp/__init__.py`) is what `import nsp.real` loads, ahead of the installed `nsp/real`. `modules_at` calls a
    bare directory 'none' ("a namespace package yields to a module"), true only when the installed one is a
    regular package. Fix: where the interpreter's `nsp` is itself a namespace package (a site dir holds `nsp/`
    without `__init__`), a new `nsp/` on an import root shadows it (body and `_shadowing`)."""
    site, workspace = tmp_path / "site", tmp_path / "ws"
    write(site / "nsp" / "real" / "__init__.py", "VALUE = 'installed'\n")
    write(workspace / "nsp" / "real" / "__init__.py", "VALUE = 'planted'\n")
    assert imported_value(workspace, site, "nsp.real") == "planted", "the import system takes the planted portion"
    names = interpreter_module_names(site_dirs=[site])
    assert "nsp" in names
    roots = import_roots(workspace)
    assert shadowing_files(workspace, roots, names) != {}, "the runner's check before verified sees nothing"


def test_review17c_a_regular_package_in_the_workspace_is_refused_and_caught(tmp_path: Path) -> None:
    """Withstood: `json/__init__.py` (a regular package named like the standard library's) is refused to the model
    (body policy, `import:json`) and found by the runner's check, though Python would load it first."""
    site, workspace = tmp_path / "site", tmp_path / "ws"
    site.mkdir()
    write(workspace / "json" / "__init__.py", "VALUE = 'planted'\n")
    assert imported_value(workspace, site, "json") == "planted"
    (workspace / "json" / "__init__.py").unlink()
    env = tmp_path / "env"
    env.mkdir()
    policy = PathPolicy(denied=(), read_only=()).with_acceptance_inputs(
        ["tests/**"], shadow=import_shadow(workspace, ["tests/**"], env)
    )
    assert policy.classify_parts(("json", "__init__.py")) == ("acceptance_input", "import:json")
    assert policy.classify_parts(("JSON", "__init__.py"))[0] == "none", "a case variant is another module on Linux"
    write(workspace / "json" / "__init__.py", "VALUE = 'planted'\n")
    found = shadowing_files(workspace, import_roots(workspace), interpreter_module_names())
    assert found == {"json/__init__.py": "json"}
