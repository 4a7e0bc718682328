"""The one base class for every model that crosses a process boundary."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ProtocolModel(BaseModel):
    """Base of all wire models: strict about unknown fields, immutable once built.

    `extra="forbid"` turns a misspelled field into a validation error that names it,
    instead of a silently ignored value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
