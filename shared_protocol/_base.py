"""The one base class for every model that crosses a process boundary, and the string shapes they share."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ProtocolModel(BaseModel):
    """Base of all wire models: strict about unknown fields, immutable once built.

    `extra="forbid"` turns a misspelled field into a validation error that names it,
    instead of a silently ignored value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
