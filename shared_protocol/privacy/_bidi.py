"""The order a reader reads a text in where a bidi override reverses what it shows.

U+202E RIGHT-TO-LEFT OVERRIDE shows the characters after it right to left: `\\u202egro.elpmaxe@ecila` is seen
`alice@example.org`, and no pattern finds an address in the order it is stored. `reading_order` gives the text's
characters in the order they are shown, from the explicit bidi codes (the Unicode Bidirectional Algorithm's
rules X1-X8 and L2, UAX #9) with every other character taken as left-to-right: what an override hides from a
left-to-right reader (an address, a number) is what this reads. Letters of a right-to-left script outside an
override stay in the order they are stored, the order their own readers read them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_RLE, _LRE, _PDF, _LRO, _RLO = "\u202b", "\u202a", "\u202c", "\u202d", "\u202e"
_LRI, _RLI, _FSI, _PDI = "\u2066", "\u2067", "\u2068", "\u2069"
_OPENS = {_RLE: (1, None), _RLO: (1, "R"), _LRE: (0, None), _LRO: (0, "L"), _RLI: (1, None), _LRI: (0, None)}
"""Each code that opens an embedding: the parity of its level (odd: right to left) and the direction it forces."""
_PARAGRAPH_ENDS = frozenset("\n\r\x1c\x1d\x1e\x85\u2029")
"""What ends a paragraph (bidi class B): every embedding and override ends there."""
_MAX_DEPTH = 125
"""UAX #9's deepest embedding level: a code that would go deeper is ignored."""


def reading_order(text: str) -> list[int] | None:
    """The positions of `text`'s characters in the order they are shown, the bidi codes left out; None when that
    is the order they are stored in (no right-to-left override)."""
    if _RLO not in text:
        return None
    order: list[int] = []
    start = 0
    for end, char in enumerate(text):
        if char in _PARAGRAPH_ENDS:
            order += _paragraph(text, start, end)
            order.append(end)
            start = end + 1
    order += _paragraph(text, start, len(text))
    return None if order == list(range(len(text))) else order


def _paragraph(text: str, start: int, end: int) -> list[int]:
    """`reading_order` of `text[start:end]`, a paragraph whose base level is 0 (left to right)."""
    stack: list[tuple[int, str | None, bool]] = [(0, None, False)]  # (level, forced direction, an isolate's)
    kept: list[int] = []
    levels: list[int] = []
    for at in range(start, end):
        char = text[at]
        level, forced, _isolate = stack[-1]
        if char in _OPENS or char == _FSI:
            parity, direction = _OPENS.get(char, (0, None))  # (FSI: its first strong letter, taken as Latin)
            deeper = level + 1 + (level + 1 + parity) % 2  # (the least level above this one of that parity)
            if deeper <= _MAX_DEPTH:
                stack.append((deeper, direction, char in (_RLI, _LRI, _FSI)))
        elif char == _PDF:
            if len(stack) > 1 and not stack[-1][2]:
                stack.pop()
        elif char == _PDI:
            if any(isolate for _level, _forced, isolate in stack):
                while not stack.pop()[2]:
                    pass
        else:
            # Forced right to left, a character is at the override's (odd) level; otherwise it is taken as
            # left-to-right, which an odd level raises by one (rules I1-I2).
            kept.append(at)
            levels.append(level if forced == "R" or level % 2 == 0 else level + 1)
    return _shown(kept, levels)


@dataclass(slots=True)
class _Run:
    """A run of characters at `level` or higher: positions at `level` and the deeper runs, in stored order."""

    level: int
    items: list[int | _Run] = field(default_factory=lambda: list[int | _Run]())


def _shown(positions: list[int], levels: list[int]) -> list[int]:
    """Rule L2: from the highest level to the lowest odd one, each run of characters at that level or higher is
    reversed. Done as one walk of the runs' tree, each character visited once (a reversal per level would read the
    text up to 125 times over)."""
    if not positions:
        return []
    lowest_odd = min(levels) | 1
    path = [_Run(0)]  # (the run open at each level)
    for position, level in zip(positions, levels, strict=True):
        del path[level + 1 :]
        while len(path) <= level:
            deeper = _Run(len(path))
            path[-1].items.append(deeper)
            path.append(deeper)
        path[-1].items.append(position)
    shown: list[int] = []
    # A run reads reversed if an odd number of the reversals reached it: its own (at its level, if it is one L2
    # reverses at) and each enclosing run's.
    walk: list[tuple[int | _Run, bool]] = [(path[0], False)]
    while walk:
        item, outer = walk.pop()
        if isinstance(item, int):
            shown.append(item)
            continue
        flipped = outer != (item.level >= lowest_odd)
        walk += [(inner, flipped) for inner in (item.items if flipped else reversed(item.items))]
    return shown
