"""Merging Swarm's entries into an IDE's JSON file without losing anything of the user's.

Every function takes the parsed file and returns a new object (the input is not changed):
other servers, other settings, other hooks and unknown keys come back as they were; only
Swarm's own entries (the `swarm` server, Swarm's rules, hooks whose command is `swarm hook`)
are added or brought up to date. Merging what a merge produced changes nothing, which is
what makes a second `swarm init` a no-op. A `.gitignore` only ever gets lines appended.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from .exceptions import MergeConflict

JsonObject = dict[str, Any]
IsOurs = Callable[[object], bool]
"""Whether a hook's `command` is Swarm's (so it is replaced, not duplicated)."""


def _child(parent: JsonObject, key: str, where: str) -> JsonObject:
    value = parent.setdefault(key, {})
    if not isinstance(value, dict):
        raise MergeConflict(f"{where}: '{key}' is a {type(value).__name__}, expected an object; fix it by hand")
    return value  # pyright: ignore[reportUnknownVariableType]


def _list(parent: JsonObject, key: str, where: str) -> list[Any]:
    value = parent.setdefault(key, [])
    if not isinstance(value, list):
        raise MergeConflict(f"{where}: '{key}' is a {type(value).__name__}, expected a list; fix it by hand")
    return value  # pyright: ignore[reportUnknownVariableType]


def set_server(doc: JsonObject, *, section: str, name: str, entry: JsonObject, where: str) -> JsonObject:
    """`doc[section][name] = entry`, keeping every other server."""
    out = copy.deepcopy(doc)
    _child(out, section, where)[name] = copy.deepcopy(entry)
    return out


def add_unique(doc: JsonObject, path: Sequence[str], items: Sequence[str], where: str) -> JsonObject:
    """Append the `items` missing from the list at `path` (created if absent), keeping its order."""
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = _child(node, key, where)
    target = _list(node, path[-1], where)
    target.extend(item for item in items if item not in target)
    return out


def remove_items(doc: JsonObject, path: Sequence[str], items: Sequence[str]) -> JsonObject:
    """Take the `items` out of the list at `path`, if there is one, keeping the rest in order."""
    out = copy.deepcopy(doc)
    node = _find(out, path)
    if isinstance(node, list):
        kept = [item for item in cast(list[object], node) if item not in items]
        node[:] = kept
    return out


def _find(node: object, path: Sequence[str]) -> object:
    for key in path:
        node = cast(JsonObject, node).get(key) if isinstance(node, dict) else None
    return node


def add_ignore_lines(text: str | None, lines: Sequence[str]) -> str:
    """A `.gitignore`'s text (None: no file yet) with `lines` appended, each on a line of its own."""
    out = text or ""
    if out and not out.endswith("\n"):
        out += "\n"
    return out + "".join(f"{line}\n" for line in lines)


def set_flag(doc: JsonObject, key: str, value: object) -> JsonObject:
    """Set a top-level key to a value (used for `version: 1` of Cursor's hooks file)."""
    out = copy.deepcopy(doc)
    out[key] = value
    return out


def _as_object(value: object) -> JsonObject | None:
    return cast(JsonObject, value) if isinstance(value, dict) else None


def _command(hook: object) -> object:
    obj = _as_object(hook)
    return obj.get("command") if obj is not None else None


def _hooks_of(group: object) -> list[object]:
    obj = _as_object(group)
    hooks = obj.get("hooks") if obj is not None else None
    return cast(list[object], hooks) if isinstance(hooks, list) else []


def set_claude_hook(doc: JsonObject, *, event: str, group: JsonObject, is_ours: IsOurs, where: str) -> JsonObject:
    """Put Swarm's matcher group under `hooks[event]`, where Swarm's hook was (or at the end).

    A user's group that also holds Swarm's hook keeps its other hooks; only Swarm's is moved out.
    """
    out = copy.deepcopy(doc)
    groups = _list(_child(out, "hooks", where), event, where)
    merged: list[Any] = []
    placed = False
    for existing in groups:
        hooks = _hooks_of(existing)
        theirs = [h for h in hooks if not is_ours(_command(h))]
        if len(theirs) == len(hooks):
            merged.append(existing)
            continue
        if theirs:
            merged.append({**cast(JsonObject, existing), "hooks": theirs})
        if not placed:
            merged.append(copy.deepcopy(group))
            placed = True
    if not placed:
        merged.append(copy.deepcopy(group))
    groups[:] = merged
    return out


def set_cursor_hooks(doc: JsonObject, *, entries: Mapping[str, JsonObject], is_ours: IsOurs, where: str) -> JsonObject:
    """Put Swarm's entry in each event's list of `hooks`, replacing Swarm's old one in place."""
    out = copy.deepcopy(doc)
    hooks = _child(out, "hooks", where)
    for event, entry in entries.items():
        existing = _list(hooks, event, where)
        merged: list[Any] = []
        placed = False
        for item in existing:
            if is_ours(_command(item)):
                if not placed:
                    merged.append(copy.deepcopy(entry))
                    placed = True
                continue
            merged.append(item)
        if not placed:
            merged.append(copy.deepcopy(entry))
        existing[:] = merged
    return out
