"""Empty containers for dataclass fields on the hot path.

`field(default_factory=list[str])` would type-check but calls a generic alias, which builds the
list and then tries to set `__orig_class__` on it: an `AttributeError` raised, formatted and
swallowed on every call. These are the plain builtins (no Python frame either), typed so that a
field's declared type is what the checker sees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

empty_list: Callable[[], list[Any]] = list
empty_dict: Callable[[], dict[Any, Any]] = dict
