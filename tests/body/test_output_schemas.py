"""Each tool's output schema admits its result and its refusal, and nothing else.

The SDK's client checks a successful result against the schema on every call (so every test that calls
a tool checks its result); refusals it leaves alone, but clients built on the TypeScript SDK check them
too, so these tests check them with the same validator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema.validators import validator_for
from mcp import Client
from mcp_types import CallToolResult, TextContent
from pydantic.json_schema import models_json_schema
from referencing import Registry

from body_mcp.server import cached_tool_definitions, tool_definition
from body_mcp.tools import ALL_TOOLS
from shared_protocol import Refusal, RefusalCode
from shared_protocol.refusals import Rule
from shared_protocol.tools import CommandOutput, RunCommandResult, StreamOutput

from .helpers import call, refused

pytestmark = pytest.mark.anyio


async def test_every_tools_output_schema_is_an_object_that_admits_its_refusal(client: Client) -> None:
    tools = (await client.list_tools()).tools
    assert len(tools) >= 18
    for tool in tools:
        assert tool.output_schema is not None and tool.output_schema["type"] == "object", tool.name
        result = await call(client, tool.name, rationale="")
        refused(result, "invalid_arguments")
        await client.session.validate_tool_result(tool.name, result)


async def test_a_run_command_refusal_with_its_full_result_is_admitted(client: Client) -> None:
    await client.list_tools()
    held = RunCommandResult(
        action_id="act_1",
        mode="live",
        exit_code=0,
        stdout="start\n[swarm: 90 bytes of stdout left out here]\nend\n",
        stderr="",
        truncated=True,
        output=CommandOutput(
            stdout=StreamOutput(printed=100, kept=100, omitted_from=6, omitted_to=96),
            stderr=StreamOutput(printed=0, kept=0),
        ),
        timed_out=False,
        killed=False,
        duration_s=0.1,
        changes=[],
        applied=False,
        refusal=Refusal(code=RefusalCode.APPROVAL_REQUIRED, rule=Rule.APPROVAL, message="ask first", action_id="act_1"),
    )
    result = CallToolResult(content=[], structured_content=held.model_dump(mode="json"), is_error=True)
    await client.session.validate_tool_result("run_command", result)


@pytest.mark.parametrize(
    "structured",
    [
        {"action_id": "act_1"},  # neither a result nor a refusal
        {"code": "protected_path", "message": "no", "action_id": "act_1"},  # a refusal without its rule
        {"code": "no_such_code", "rule": "r", "message": "no", "action_id": "act_1"},
        {"code": "protected_path", "rule": "r", "message": "no", "action_id": "act_1", "path": "README.md"},
    ],
)
async def test_the_schema_still_rejects_what_is_neither_the_result_nor_a_refusal(
    client: Client, structured: dict[str, str]
) -> None:
    await client.list_tools()
    with pytest.raises(RuntimeError, match="Invalid structured content"):
        await client.session.validate_tool_result(
            "read_text_file", CallToolResult(content=[], structured_content=structured)
        )


async def test_a_refusal_carries_its_json_in_the_text_too(client: Client) -> None:
    result = await call(client, "read_text_file", path="../outside.txt")
    data = refused(result, "path_outside_workspace")
    [text] = result.content
    assert isinstance(text, TextContent)
    assert json.loads(text.text.splitlines()[-1]) == data


_DOCUMENTS: list[dict[str, Any]] = [
    {"action_id": "a", "path": "d", "files": ["f.txt"], "directories": ["d"], "symlinks": [], "other": []},
    {"action_id": "a", "path": "d", "files": [1], "directories": [], "symlinks": [], "other": []},
    {"action_id": "a", "path": "d", "files": [], "directories": [], "symlinks": []},
    {"action_id": "a", "path": "d", "files": [], "directories": [], "symlinks": [], "other": [], "sizes": [1]},
    {"action_id": "a", "path": "d", "truncated": False, "tree": [{"name": "x", "type": "directory", "children": []}]},
    {
        "action_id": "a",
        "path": "d",
        "truncated": False,
        "tree": [
            {
                "name": "x",
                "type": "directory",
                "children": [{"name": "y", "type": "directory", "children": [{"name": "z", "type": "bogus"}]}],
            }
        ],
    },
    {"action_id": "a", "path": "p", "content": "x", "binary": False, "size": 1, "sha256": ""},
    {"action_id": "a", "mode": "live", "changes": [{"path": "x", "kind": "modified"}], "diff": ""},
    {"action_id": "a", "mode": "live", "changes": [{"path": "x", "kind": "eaten"}], "diff": ""},
    {"code": "protected_path", "rule": "r", "message": "m", "action_id": "a"},
    {"code": "approval_required", "rule": "r", "message": "m", "action_id": "a", "ask": {"needs": "human"}},
    {"code": "approval_required", "rule": "r", "message": "m", "action_id": "a", "ask": {"needs": "nobody"}},
    {"action_id": "a"},
]


def test_an_output_schema_has_its_definitions_inlined_and_admits_what_the_models_schema_admits() -> None:
    # Inlined because the SDK's client checks every result against it, and `$ref` lookups were most of that cost.
    for spec in ALL_TOOLS:
        schema = tool_definition(spec).output_schema
        assert schema is not None
        refs, definitions = models_json_schema([(spec.result_model, "validation"), (Refusal, "validation")])
        reference = {"type": "object", "anyOf": [refs[spec.result_model, "validation"], refs[Refusal, "validation"]]}
        reference |= definitions
        validator_for(schema).check_schema(schema)
        ours = validator_for(schema)(schema, registry=Registry())
        theirs = validator_for(reference)(reference, registry=Registry())
        for document in _DOCUMENTS:
            assert ours.is_valid(document) == theirs.is_valid(document), (spec.name, document)
        # Only a model that contains itself (a tree's node) keeps a `$ref`.
        assert ("$ref" in json.dumps(schema)) == (spec.name == "directory_tree"), spec.name


def test_the_cached_tool_definitions_are_the_ones_made_and_a_bad_cache_is_remade(tmp_path: Path) -> None:
    """A `swarm body` reads its tools' definitions from the home's cache when this same code wrote them: what it
    reads equals what it would make, and a damaged cache, or one naming other tools, is made again."""
    made = [tool_definition(spec) for spec in ALL_TOOLS]
    cache = tmp_path / "cache"
    assert cached_tool_definitions(ALL_TOOLS, cache) == made  # (none yet: made and written)
    [written] = cache.glob("tool-definitions-*.json")
    assert cached_tool_definitions(ALL_TOOLS, cache) == made  # (read)
    assert [tool.name for tool in cached_tool_definitions(ALL_TOOLS[:3], cache)] == [s.name for s in ALL_TOOLS[:3]]
    [rewritten] = cache.glob("tool-definitions-*.json")
    assert len(json.loads(rewritten.read_bytes())) == 3
    written.write_text("{not json")
    assert cached_tool_definitions(ALL_TOOLS, cache) == made
    assert len(json.loads(written.read_bytes())) == len(ALL_TOOLS)
    assert [p.name for p in cache.iterdir()] == [written.name]  # (no temp file left behind)
