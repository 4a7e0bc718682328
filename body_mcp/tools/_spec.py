"""What a tool is to the guard: its argument and result models, its handler, and its nature."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from shared_protocol import NO_IMPACT, Impact, ToolArgs, ToolResult

if TYPE_CHECKING:
    from ..body import Body
    from ..guard import CallContext

PathAccess = Literal["read", "write", "write_nofollow"]
"""`write_nofollow`: the path's last component is acted on itself, even when it is a symlink."""

ToolOutput = ToolResult | dict[str, Any]
"""A handler's result: the model, or what its `model_dump(mode="json")` would be (the hot path builds that)."""

Handler = Callable[["Body", "CallContext", Any], Awaitable[ToolOutput]]


def _reversible(_args: Any) -> str | None:
    return None


def _no_impact(_args: Any) -> Impact:
    return NO_IMPACT


@dataclass(kw_only=True, frozen=True)
class ToolSpec:
    name: str
    description: str
    args_model: type[ToolArgs]
    result_model: type[ToolResult]
    handler: Handler
    read_only: bool
    destructive: bool = False
    idempotent: bool = False
    path_fields: dict[str, PathAccess] = field(default_factory=dict[str, PathAccess])
    """Arguments that name workspace paths, and how each is used (confinement and policy check them)."""
    plan: Callable[[Any], Impact] = _no_impact
    """The impact reserved before executing; the handler reports the measured one."""
    text: Callable[[Any], str] | None = None
    """The result as text for the model; default: the structured result as JSON."""
    irreversible: Callable[[Any], str | None] = _reversible
    """Why this call could not be undone (e.g. network requests), or None: recorded before it runs."""
