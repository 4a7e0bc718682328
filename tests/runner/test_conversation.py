"""The neutral conversation types: tools come from MCP `tools/list` as they are; a turn goes back as a message."""

from __future__ import annotations

from agent_runner import AssistantMessage, ModelTurn, ToolCall, ToolDefinition


def test_a_tool_is_taken_from_an_mcp_tools_list_entry_with_its_schema_untouched() -> None:
    schema = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
    entry = {"name": "read_text_file", "description": "Read a file.", "inputSchema": schema, "annotations": {}}
    assert ToolDefinition.from_mcp(entry) == ToolDefinition(
        name="read_text_file", description="Read a file.", input_schema=schema
    )
    bare = ToolDefinition.from_mcp({"name": "status", "inputSchema": None})
    assert bare.description == "" and bare.input_schema == {"type": "object", "properties": {}}


def test_a_turn_goes_back_into_the_conversation_as_an_assistant_message_with_its_calls() -> None:
    call = ToolCall(id="c1", name="status", arguments={})
    turn = ModelTurn(content="Checking.", tool_calls=(call,), stop_reason="tool_use")
    assert turn.as_message() == AssistantMessage(content="Checking.", tool_calls=(call,))
