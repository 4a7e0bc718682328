"""How a file name is shown to the agent (`shown`) and read back from a path argument (`named`).

A name on disk is bytes; a reply is UTF-8. A name that is not UTF-8 (a checkout, a file a human made) is shown
escaped as the audit trail escapes strings (`escape_string`: each byte that does not decode as `\\xff`, each
backslash doubled), and so is an ASCII name that spells such an escape out (`a\\xff` in ASCII is shown `a\\\\xff`),
so two names never read alike. A path argument is read back the same way (`unescape_string`), by the one place every
path argument goes through (`Workspace.resolve`), so a name given back as it was shown is the file it was shown
for, and every check after (confinement, the path policy) sees the name on disk, however it was spelt. A glob
argument is read back so too (`glob`), so a pattern can name what a listing shows.
"""

from __future__ import annotations

import os

from .audit import escape_string, unescape_string
from .exceptions import InvalidArguments, InvalidPath


def shown(name: str) -> str:
    """A name as a result shows it: as it is, unless it holds bytes that are not UTF-8, which no reply could encode,
    or spells out what such an escape looks like (`a\\xff` in ASCII, a backslash in it before `\\`, `x` and two hex
    digits, or `u` and four): then escaped, so `named` of any name shown is the name, and a name that is not UTF-8
    never reads as one that is."""
    if "\\" in name:
        return escape_string(name) if unescape_string(name) != name or not representable(name) else name
    return name if name.isascii() or representable(name) else escape_string(name)


def named(raw: str) -> str:
    """The path a path argument names, read as `shown` writes names: `\\\\` is a backslash, `\\xNN` the byte NN,
    `\\uNNNN` that character; any other backslash is itself. The result is in the form a directory listing gives
    names in (`os.fsdecode` of the bytes), so bytes spelt `\\xc3\\xa9` are `é`: one name, one spelling, for every
    check.

    Raises:
        InvalidPath: an escape names no byte of a file name (`\\x41`: ASCII is written as itself; a surrogate
            `\\ud800`).
    """
    if "\\" not in raw:  # (the usual path: nothing to read back)
        return raw
    path = unescape_string(raw)
    if path == raw:
        return raw
    try:
        data = os.fsencode(path)
    except UnicodeEncodeError:
        raise InvalidPath(
            f"'{raw}' holds an escape that names no byte of a file name (`\\xNN` is for a byte 80 to ff that is not "
            "UTF-8; `\\uNNNN` for a character, never a surrogate); write `\\\\` for a backslash"
        ) from None
    return os.fsdecode(data)


def glob(raw: str, field: str) -> str:
    """A glob argument (`search_files`' `pattern`, `exclude_patterns`) as it is matched against names on disk: its
    escapes read as `named` reads a path's (`*\\xff` finds the name a listing shows as `a\\xff`), its wildcards
    `fnmatch`'s: `*`, `?`, a set `[abc]` or `[!abc]` (`[*]`, `[?]`, `[[]` match the character itself; a backslash
    escapes no wildcard).

    Raises:
        InvalidArguments: an escape names no byte of a file name, or a `[` opens a set no `]` closes (`fnmatch` would
            match that `[` as itself, silently: `[abc` is then a name, not the set the agent meant).
    """
    try:
        pattern = named(raw)
    except InvalidPath:
        raise InvalidArguments(
            f"{field} '{printable(raw)}' holds an escape that names no byte of a file name (`\\xNN` is for a byte "
            "80 to ff that is not UTF-8; `\\uNNNN` for a character, never a surrogate); write `\\\\` for a backslash"
        ) from None
    at = 0
    while (at := pattern.find("[", at)) >= 0:
        end = at + 1 + pattern.startswith("!", at + 1)
        end += pattern.startswith("]", end)  # (a `]` first in a set is one of its characters)
        close = pattern.find("]", end)
        if close < 0:
            raise InvalidArguments(
                f"{field} '{printable(raw)}' opens a set with '[' that no ']' closes (write '[[]' to match a '[')"
            )
        at = close + 1
    return pattern


def printable(text: str) -> str:
    """`text` (a message, say) as a reply can carry it: as it is when it is valid Unicode, else with each byte of
    a name that is not UTF-8 written `\\xNN` (as `shown` writes it; its backslashes left as they are). A reply
    holding a lone surrogate cannot be encoded: over stdio the body would die on writing it."""
    return text if representable(text) else text.encode(errors="surrogateescape").decode(errors="backslashreplace")


def representable(name: str) -> bool:
    """Whether `name` is valid UTF-8 on disk (a name that is not decodes with lone surrogates), and so can be
    audited, recorded for undo and shown to the agent as it is."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True
