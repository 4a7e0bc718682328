"""Moving a branch back and forth for undo: compare-and-swap, so a ref that moved meanwhile is never clobbered."""

from __future__ import annotations

from pathlib import Path

from shared_protocol import RefusalCode
from shared_protocol.refusals import Rule

from ..exceptions import UndoRefused
from ._run import Git

_NO_COMMIT = "0" * 40


def read_ref(root: Path, ref: str) -> str | None:
    """The commit `ref` names in the repository at `root`; None when it does not exist."""
    with Git(root).session() as git:
        return git.ref(ref)


def move_ref(root: Path, ref: str, *, expected: str | None, to: str | None) -> None:
    """Set `ref` to `to` (None: delete it) if it still names `expected`; refused (`undo_conflict`) otherwise."""
    with Git(root).session() as git:
        if to is None:
            out = git.run("update-ref", "-d", ref, expected or _NO_COMMIT)
        else:
            out = git.run("update-ref", ref, to, expected or _NO_COMMIT)
    if out.code != 0:
        raise UndoRefused(
            f"could not move {ref} back: git says: {out.stderr.strip() or out.code}; nothing was undone",
            code=RefusalCode.UNDO_CONFLICT,
            rule=Rule.UNDO_CONFLICT,
        )
