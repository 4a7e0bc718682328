"""Git output never shows a protected (denied) file: pathspec exclusions, then a filter over what came out.

The exclusions keep git from reading those files at all; the filter is the guarantee (a
pathspec and the policy's patterns do not agree on every corner: case, a rename's other
side). A diff section naming a denied path anywhere in its header is dropped whole, and so is
a status entry with a denied path or origin.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from ..policy import PathPolicy

IsDenied = Callable[[str], bool]

_OCTAL = re.compile(rb"\\([0-7]{3})")
_ESCAPES = {b"a": b"\a", b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}
_SECTION_END = ("@@", "Binary files ", "GIT binary patch")
_NAMED = ("--- ", "+++ ", "rename from ", "rename to ", "copy from ", "copy to ")
COMMIT_MARK = "\x01"
"""Starts the line that names each commit in a `git log -p` this module filters (`--format=%x01%H`)."""


def denied_check(policy: PathPolicy) -> IsDenied:
    def is_denied(path: str) -> bool:
        parts = tuple(p for p in path.split("/") if p)
        return bool(parts) and policy.classify_parts(parts)[0] == "denied"

    return is_denied


def exclude_pathspecs(denied: Sequence[str]) -> list[str]:
    """`:(exclude)` pathspecs for the denied patterns (and everything below a matching directory), ignoring case
    like the policy."""
    specs: list[str] = []
    for pattern in denied:
        if "/" in pattern:
            anchored = pattern.strip("/")
            specs += [f":(exclude,glob,icase){anchored}", f":(exclude,glob,icase){anchored}/**"]
        else:
            specs += [f":(exclude,glob,icase)**/{pattern}", f":(exclude,glob,icase)**/{pattern}/**"]
    return specs


def unquote(name: str) -> str:
    """A path as git prints it: C-quoted (`"a/\\303\\251"`) when it holds unusual bytes."""
    if not (len(name) >= 2 and name.startswith('"') and name.endswith('"')):
        return name
    raw = name[1:-1].encode("utf-8", "surrogateescape")
    raw = _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), raw)
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i : i + 1] == b"\\" and i + 1 < len(raw):
            nxt = raw[i + 1 : i + 2]
            out += _ESCAPES.get(nxt, nxt)
            i += 2
        else:
            out += raw[i : i + 1]
            i += 1
    return out.decode("utf-8", "replace")


def _strip_side(path: str) -> str:
    path = unquote(path.rstrip("\t").split("\t")[0] if not path.startswith('"') else path.rstrip("\t"))
    return path[2:] if path[:2] in ("a/", "b/") else path


def _header_paths(line: str) -> list[str]:
    """Every reading of a `diff --git a/X b/Y` line's paths (unquoted names with spaces are ambiguous: all splits)."""
    rest = line[len("diff --git ") :]
    if rest.startswith('"') or rest.endswith('"'):
        found = re.findall(r'"(?:[^"\\]|\\.)*"|\S+', rest)
        return [_strip_side(name) for name in found]
    paths: list[str] = []
    start = 0
    while (at := rest.find(" b/", start)) != -1:
        paths += [_strip_side(rest[:at]), _strip_side(rest[at + 1 :])]
        start = at + 1
    return paths or [_strip_side(rest)]


def _section_denied(header: Iterable[str], is_denied: IsDenied) -> bool:
    for line in header:
        if line.startswith("diff --git "):
            if any(is_denied(p) for p in _header_paths(line)):
                return True
            continue
        for prefix in _NAMED:
            if line.startswith(prefix):
                name = line[len(prefix) :]
                if name != "/dev/null" and is_denied(_strip_side(name)):
                    return True
    return False


def filter_patch(text: str, is_denied: IsDenied) -> str:
    """`text` (a diff, or a `git log -p` with `COMMIT_MARK` lines) without the sections of denied files."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("diff --git "):
            out.append(line)
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not lines[end].startswith(("diff --git ", COMMIT_MARK)):
            end += 1
        header_end = i + 1
        while header_end < end and not lines[header_end].startswith(_SECTION_END):
            header_end += 1
        header = [lines[k].rstrip("\n") for k in range(i, min(header_end + 1, end))]
        if not _section_denied(header, is_denied):
            out.extend(lines[i:end])
        i = end
    return "".join(out)
