"""Exceptions of the IDE integration.

    UserError (body_mcp.exceptions)
    └── IdeSetupError            `swarm init --ide` or `swarm doctor` cannot go on
        ├── ConfigFileUnreadable  an IDE file exists but is not a JSON object we can merge into
        └── MergeConflict         a key we must write holds something of another shape
    ValueError
    └── MalformedEvent           a hook's stdin is not the IDE event it should be (the hook denies)

`MalformedEvent` never reaches a human: the hook turns it into a deny answer.
"""

from __future__ import annotations

from ..exceptions import UserError


class IdeSetupError(UserError):
    """Writing or checking an IDE's configuration failed; the message says which file and why."""


class ConfigFileUnreadable(IdeSetupError):
    """An existing IDE file is not valid JSON (or not an object): it is left untouched, never clobbered."""


class MergeConflict(IdeSetupError):
    """A key Swarm writes holds a value of another type (e.g. `mcpServers` is a list): left for the human."""


class MalformedEvent(ValueError):
    """The hook's input is not a well-formed event of the IDE it was configured for."""
