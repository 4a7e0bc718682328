"""Empty containers for dataclass fields on the hot path.

`field(default_factory=list[str])` would type-check but calls a generic alias, which builds the
list and then tries to set `__orig_class__` on it: an `AttributeError` raised, formatted and
swallowed on every call. These plain functions return what the declared field type says.
"""

from __future__ import annotations

from typing import Any


def empty_list() -> list[Any]:
    return []


def empty_dict() -> dict[Any, Any]:
    return {}
