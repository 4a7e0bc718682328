"""Rounds that alternate, for the benches that measure several subjects in one run (this tree against another,
pages open and closed): each subject once a round, in an order rotated by one place each round.

The machine is shared and its speed drifts: measured in every round, the subjects meet its slow moments alike, and
the rotation keeps any one from always running first, or always right after the same other's work.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def alternating_rounds(rounds: int, subjects: Sequence[T]) -> Iterator[tuple[int, T]]:
    """(round, subject) for `rounds` rounds (from 0): every subject once a round, round r starting at subject
    r mod len(subjects) (with two: in order, then the other way round)."""
    for r in range(rounds):
        shift = r % len(subjects)
        for subject in [*subjects[shift:], *subjects[:shift]]:
            yield r, subject
