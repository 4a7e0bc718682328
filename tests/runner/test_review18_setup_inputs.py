"""Review #18 (round 2): which files a task with a setup keeps from its model. The setup is re-run into the check's
fresh env before the acceptance re-run, so every file the setup's installer obeys decides what the check runs with.
test_review18_setup_config.py shows one end to end (uv.toml); this lists the others, decided by the real policy the
runner gives its model's body (the default read-only paths plus the task's acceptance inputs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_runner.runner import acceptance_inputs
from body_mcp.policy import PathPolicy
from shared_protocol.config import DEFAULT_DENIED_PATHS, DEFAULT_READ_ONLY_PATHS

from .test_acceptance_inputs import task

SETUP = "sh -c 'uv venv -q .venv && uv pip install -q -r requirements.txt'"
ACCEPTANCE = "python -m pytest -q tests"


def _models_policy(workspace: Path) -> PathPolicy:
    inputs = acceptance_inputs(task(ACCEPTANCE, setup=SETUP), workspace)
    return PathPolicy(denied=DEFAULT_DENIED_PATHS, read_only=DEFAULT_READ_ONLY_PATHS, acceptance_inputs=inputs)


@pytest.mark.parametrize(
    "path", ["pyproject.toml", "uv.lock", "requirements.txt", "requirements-dev.txt", "setup.py", "package.json"]
)
def test_the_declared_setup_inputs_are_not_the_models(tmp_path: Path, path: str) -> None:
    assert _models_policy(tmp_path).classify_parts(tuple(path.split("/")))[0] != "none"


@pytest.mark.parametrize(
    "path",
    [
        "uv.toml",
        ".python-version",
        "constraints.txt",
        "Pipfile.lock",
        "poetry.lock",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bunfig.toml",
        "pip.ini",
    ],
)
def test_what_else_the_setup_obeys_is_not_the_models_either(tmp_path: Path, path: str) -> None:
    """Was a hole: these were the model's to write though the check's setup obeys them; they are setup inputs now."""
    assert _models_policy(tmp_path).classify_parts(tuple(path.split("/")))[0] != "none"
