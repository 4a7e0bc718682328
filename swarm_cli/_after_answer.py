"""Work a command leaves until its answer is out: the IDE hook's audit commit and anchor (its event is durable in
the journal before the answer, as a serving body's event is before its reply).

`main` does it once the command has returned; the warm hook server's child once it has sent the caller the exit
status, so that the IDE does not wait for it. A failure is one line on stderr (the event stays in the journal,
where the next store to open the trail commits it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

_pending: list[Callable[[], None]] = []


def defer(work: Callable[[], None]) -> None:
    """Do `work` after the answer (in the order deferred)."""
    _pending.append(work)


def run() -> None:
    """Do what was deferred; one line on stderr for each failure."""
    from ._errors import describe

    while _pending:
        work = _pending.pop(0)
        try:
            work()
        except Exception as exc:  # noqa: BLE001  (the end of a command: its answer is out; say what failed, go on)
            print(f"swarm: after the answer: {describe(exc)}", file=sys.stderr)
