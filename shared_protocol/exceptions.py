"""Exceptions of the shared protocol, raised by its pure functions; each service maps them to its own plane.

    ProtocolError
    └── AnswerRefused   an answer the decision's state no longer allows; `code` names the rule

The brain answers an `AnswerRefused` with a 409 of the same code; a standalone body's CLI
prints it as a one-line error.
"""

from __future__ import annotations

from typing import Literal

AnswerRefusal = Literal["not_pending", "already_final"]
"""not_pending: approve and deny need a pending decision; already_final: nothing left to override."""


class ProtocolError(Exception):
    """Base of every error raised on purpose by `shared_protocol`."""


class AnswerRefused(ProtocolError):
    """An answer that comes too late: the decision was answered, expired or vetoed first."""

    def __init__(self, message: str, *, code: AnswerRefusal, decision_id: str) -> None:
        super().__init__(message)
        self.message = message
        self.code: AnswerRefusal = code
        self.decision_id = decision_id
