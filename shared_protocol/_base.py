"""The one base class for every model that crosses a process boundary, and the string shapes they share."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ProtocolModel(BaseModel):
    """Base of all wire models: strict about unknown fields, immutable once built.

    `extra="forbid"` turns a misspelled field into a validation error that names it,
    instead of a silently ignored value. `defer_build=True`: a model's validator and serializer are built on its
    first use, not at import (building all of them was about half of importing `shared_protocol`, and most
    processes use a few). Two threads that use a model first at once are safe from pydantic 2.14 on (its rebuild
    lock; pyproject asks for it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


def build_models() -> None:
    """Build every wire model's validator and serializer now: a process that forks workers calls it once before
    forking, so that each child does not build its own (and copy those pages)."""
    pending: list[type[ProtocolModel]] = [ProtocolModel]
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        if not model.__pydantic_complete__:
            model.model_rebuild()
