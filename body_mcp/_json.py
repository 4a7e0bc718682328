"""JSON encoders built once, for the per-call hot path.

`json.dumps` builds a new encoder (and a closure) on every call, which costs more than
encoding a small event. These are the C encoder of the standard library, made once, with
exactly the output of the `json.dumps` call each replaces.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _encoder
from typing import Any


def _not_serializable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _build(*, sort_keys: bool, item_separator: str, key_separator: str) -> Callable[[Any], str]:
    make: Any = getattr(_encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the pure-Python encoder, same output
        return json.JSONEncoder(
            sort_keys=sort_keys, separators=(item_separator, key_separator), ensure_ascii=False
        ).encode
    # No circular-reference markers: everything encoded here is a tree (parsed JSON and our own dicts).
    encode = make(
        None, _not_serializable, _encoder.encode_basestring, None, key_separator, item_separator, sort_keys, False, True
    )

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return dumps


canonical = _build(sort_keys=True, item_separator=",", key_separator=":")
"""`json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`: what the audit chain signs."""

compact = _build(sort_keys=False, item_separator=",", key_separator=":")
"""`json.dumps(value, separators=(",", ":"), ensure_ascii=False)`."""

plain = _build(sort_keys=False, item_separator=", ", key_separator=": ")
"""`json.dumps(value, ensure_ascii=False)`."""
