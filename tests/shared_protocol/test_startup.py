"""What importing `shared_protocol` leaves for later: the wire models' validators (built on first use, or all at once
by `build_models` before a server forks) and httpx's command-line client (never imported)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError


def _run(code: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout


def test_a_wire_model_builds_on_first_use_and_validates_as_before() -> None:
    out = _run(
        "from shared_protocol import Task, RunCommandArgs\n"
        "print(Task.__pydantic_complete__, RunCommandArgs.__pydantic_complete__)\n"
        "args = RunCommandArgs.model_validate({'argv': ['ls'], 'rationale': 'list'})\n"
        "print(RunCommandArgs.__pydantic_complete__, Task.__pydantic_complete__, args.argv)\n"
        "try:\n"
        "    RunCommandArgs.model_validate({'argv': ['ls'], 'rationale': 'list', 'typo': 1})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, 'typo' in str(exc))\n"
    )
    assert out.split("\n")[:3] == ["False False", "True False ['ls']", "ValidationError True"]


def test_build_models_leaves_no_wire_model_deferred() -> None:
    from shared_protocol import ProtocolModel, RunCommandArgs
    from shared_protocol._base import build_models

    build_models()
    pending: list[type[ProtocolModel]] = [ProtocolModel]
    seen = 0
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        assert model.__pydantic_complete__, model.__qualname__
        seen += 1
    assert seen > 100
    with pytest.raises(ValidationError, match="typo"):
        RunCommandArgs.model_validate({"argv": ["ls"], "rationale": "list", "typo": 1})


def test_httpx_works_without_importing_its_command_line_client() -> None:
    out = _run(
        "import sys, shared_protocol, httpx\n"
        "loaded = {m.split('.')[0] for m, v in sys.modules.items() if v is not None}\n"
        "print(sorted(loaded & {'click', 'rich', 'pygments'}))\n"
        "print(httpx.Client(base_url='http://127.0.0.1:9').build_request('GET', '/v1').url)\n"
    )
    assert out.split("\n")[:2] == ["[]", "http://127.0.0.1:9/v1"]


def test_the_hook_servers_preload_compiles_every_detector_pattern_a_fresh_process_leaves_for_later(
    tmp_path: Path,
) -> None:
    # (in a fresh process: this one's patterns may have been compiled by other tests)
    count = (
        "from shared_protocol.privacy import _detect;"
        "lazy = [v for v in vars(_detect).values() if isinstance(v, _detect._Lazy)];"
        "print(len(lazy), sum(v._compiled is not None for v in lazy))"
    )
    env = {**os.environ, "SWARM_HOME": str(tmp_path / "home")}
    env.pop("SWARM_CONFIG", None)
    total, compiled = map(int, _run(count, env).split())
    assert total >= 15 and compiled == 0
    total, compiled = map(int, _run("from swarm_cli._hook_server import _preload; _preload();" + count, env).split())
    assert compiled == total >= 15
