"""The tools' definitions a body caches under SWARM_HOME/cache, made once per test process and put into new homes."""

from __future__ import annotations

import tempfile
from pathlib import Path

from body_mcp.server import cached_tool_definitions
from body_mcp.tools import ALL_TOOLS

_TOOL_DEFINITIONS: dict[str, bytes] = {}


def seed_tool_definitions(home: Path) -> None:
    """Put the tools' definitions a body caches under SWARM_HOME/cache (`cached_tool_definitions`: keyed by this code,
    the same for every body here) into a new `home`, made once per test process: each test's first body reads them
    instead of making them again (pydantic's JSON schemas, some 0.15-0.3 s of CPU a body start). A cache made and
    missed, damaged or naming other tools is tests/body/test_output_schemas.py's."""
    if not _TOOL_DEFINITIONS:
        with tempfile.TemporaryDirectory() as made:
            cached_tool_definitions(ALL_TOOLS, Path(made))
            _TOOL_DEFINITIONS.update((p.name, p.read_bytes()) for p in Path(made).glob("tool-definitions-*.json"))
    cache = home / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for name, data in _TOOL_DEFINITIONS.items():
        (cache / name).write_bytes(data)
