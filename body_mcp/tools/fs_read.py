"""Read-only file tools: read_text_file, list_directory, directory_tree, search_files, get_file_info."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from shared_protocol import (
    DirectoryTreeArgs,
    DirectoryTreeResult,
    GetFileInfoResult,
    ListDirectoryResult,
    PathArgs,
    ReadTextFileArgs,
    ReadTextFileResult,
    RefusalCode,
    SearchFilesArgs,
    SearchFilesResult,
    TreeNode,
)
from shared_protocol.refusals import Rule
from shared_protocol.tools import EntryKind

from .. import _fsops
from ..audit import unescape_string
from ..exceptions import InvalidArguments, SpecialFile, ToolRefused
from ..names import glob, shown
from ._spec import ToolContext, ToolSpec


def _kind(mode: int) -> EntryKind:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def decode_text(data: bytes) -> str | None:
    """The text of `data`, or None when it is binary (a NUL byte, or not UTF-8)."""
    if b"\x00" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


async def read_text_file(ctx: ToolContext[ReadTextFileArgs]) -> ReadTextFileResult:
    args = ctx.args
    path = ctx.paths["path"]
    if args.head is not None and args.tail is not None:
        raise InvalidArguments("give head or tail, not both")
    st = ctx.deps.workspace.lstat(path)
    if st is None:
        raise ToolRefused(f"'{path.shown}' does not exist", code=RefusalCode.NOT_FOUND, rule=Rule.FS)
    if stat.S_ISDIR(st.st_mode):
        raise ToolRefused(
            f"'{path.shown}' is a directory: use list_directory", code=RefusalCode.NOT_A_FILE, rule=Rule.FS
        )
    if not stat.S_ISREG(st.st_mode):
        raise SpecialFile(f"'{path.shown}' is a device, FIFO or socket: never read")
    cap = ctx.deps.files.max_read_bytes
    state, data = _fsops.read_entry(ctx.deps.workspace, path.parts, max_bytes=cap)
    if data is None or state.type != "file":
        raise ToolRefused(f"'{path.shown}' changed while being read", code=RefusalCode.IO_ERROR, rule=Rule.FS)
    ctx.effects.files = [path.rel]
    text = decode_text(data)
    if text is not None and args.head is not None:
        text = "".join(text.splitlines(keepends=True)[: args.head])
    elif text is not None and args.tail is not None:
        text = "".join(text.splitlines(keepends=True)[-args.tail :])
    return ReadTextFileResult(
        action_id=ctx.action_id,
        path=path.shown,
        content=text,
        binary=text is None,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _read_text(result: ReadTextFileResult) -> str:
    if result.binary:
        return f"{result.path}: binary file, {result.size} bytes, sha256 {result.sha256} (not shown)"
    return result.content or ""


def _scan(fd: int) -> list[os.DirEntry[str]]:
    # scandir on a dup: scandir closes the descriptor it is given when done.
    with os.scandir(os.dup(fd)) as it:
        return sorted(it, key=lambda e: e.name)


def _entry_kind(entry: os.DirEntry[str]) -> EntryKind:
    # From the directory read's own record of each entry's type (d_type): no `lstat` per entry, except on a file
    # system that does not record it, where `os.DirEntry` falls back to one itself.
    if entry.is_symlink():
        return "symlink"
    if entry.is_dir(follow_symlinks=False):
        return "directory"
    if entry.is_file(follow_symlinks=False):
        return "file"
    return "other"


_GROUP: dict[EntryKind, str] = {"file": "files", "directory": "directories", "symlink": "symlinks", "other": "other"}


async def list_directory(ctx: ToolContext[PathArgs]) -> ListDirectoryResult:
    path = ctx.paths["path"]
    groups: dict[str, list[str]] = {group: [] for group in _GROUP.values()}
    with ctx.deps.workspace.open_dir(path.parts) as fd:
        for entry in _scan(fd):
            groups[_GROUP[_entry_kind(entry)]].append(shown(entry.name))
    # One validation of the whole result (pydantic's, in Rust) rather than one model built in Python per entry.
    return ListDirectoryResult.model_validate({"action_id": ctx.action_id, "path": path.shown, **groups})


def _listing_text(result: ListDirectoryResult) -> str:
    """The listing as the model reads it: one entry a line, by name, its kind first (`[DIR] src`), as the reference
    filesystem server shows it; a name that would break the line (a newline in it, say) is quoted as JSON, and so is
    one that would read as quoted or trimmed (a `"` first, a space at either end) or that `shown` escaped (quoted
    as the name itself: a byte that is not UTF-8 as Python reads it, `"a\\udcff"`; `"a\\\\xff"` for the ASCII name
    `a\\xff`), so two names never read alike."""
    lines = sorted(
        [
            *((name, "[FILE]") for name in result.files),
            *((name, "[DIR]") for name in result.directories),
            *((name, "[LINK]") for name in result.symlinks),
            *((name, "[OTHER]") for name in result.other),
        ]
    )
    if not lines:
        return f"{result.path}: empty directory"
    return "\n".join(f"{tag} {_line_name(name)}" for name, tag in lines)


def _line_name(name: str) -> str:
    """A name of the result as its line shows it: as it is when plain, else quoted as JSON (see `_listing_text`)."""
    if "\\" in name:
        named = unescape_string(name)
        if named != name:  # (`shown` escaped it)
            return json.dumps(named)
    return name if _plain(name) else json.dumps(name)


def _plain(name: str) -> bool:
    """Whether a listing shows `name` as it is: printable, not starting with a quote, not starting or ending with
    white space (shown bare, `"a\\nb"` would read as the quoted `a<newline>b`, and ` a` as `a`)."""
    return name.isprintable() and not name.startswith('"') and name.strip() == name


def _excluded(patterns: list[str]) -> list[str]:
    return [glob(raw, f"exclude_patterns[{index}]") for index, raw in enumerate(patterns)]


def _walk(fd: int, prefix: str, excluded: list[str]) -> Iterator[tuple[str, os.DirEntry[str], int | None]]:
    """Depth-first (relative path, entry, descriptor of the entry when it is a directory); never follows links."""
    for entry in _scan(fd):
        if any(fnmatchcase(entry.name, pattern) for pattern in excluded):
            continue
        rel = f"{prefix}{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            try:
                child = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError:
                yield rel, entry, None
                continue
            try:
                yield rel, entry, child
            finally:
                os.close(child)
        else:
            yield rel, entry, None


async def directory_tree(ctx: ToolContext[DirectoryTreeArgs]) -> DirectoryTreeResult:
    args = ctx.args
    path = ctx.paths["path"]
    excluded = _excluded(args.exclude_patterns)
    count = 0
    truncated = False

    def build(fd: int) -> list[TreeNode]:
        nonlocal count, truncated
        nodes: list[TreeNode] = []
        for rel, entry, child in _walk(fd, "", excluded):
            if count >= args.max_entries:
                truncated = True
                break
            count += 1
            kind = _entry_kind(entry)
            children = build(child) if child is not None else ([] if kind == "directory" else None)
            nodes.append(TreeNode(name=shown(rel), type=kind, children=children))
        return nodes

    with ctx.deps.workspace.open_dir(path.parts) as fd:
        tree = build(fd)
    return DirectoryTreeResult(action_id=ctx.action_id, path=path.shown, tree=tree, truncated=truncated)


async def search_files(ctx: ToolContext[SearchFilesArgs]) -> SearchFilesResult:
    args = ctx.args
    path = ctx.paths["path"]
    base = "" if not path.parts else path.rel + "/"
    pattern = glob(args.pattern, "pattern")
    excluded = _excluded(args.exclude_patterns)
    matches: list[str] = []
    truncated = False

    def visit(fd: int, prefix: str) -> None:
        nonlocal truncated
        for rel, entry, child in _walk(fd, prefix, excluded):
            if truncated:
                return
            if fnmatchcase(entry.name, pattern) or fnmatchcase(rel, pattern):
                if len(matches) >= args.max_results:
                    truncated = True
                    return
                matches.append(shown(base + rel))
            if child is not None:
                visit(child, rel + "/")

    with ctx.deps.workspace.open_dir(path.parts) as fd:
        visit(fd, "")
    return SearchFilesResult(action_id=ctx.action_id, matches=matches, truncated=truncated)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


async def get_file_info(ctx: ToolContext[PathArgs]) -> GetFileInfoResult:
    path = ctx.paths["path"]
    st = ctx.deps.workspace.lstat(path)
    if st is None:
        raise ToolRefused(f"'{path.shown}' does not exist", code=RefusalCode.NOT_FOUND, rule=Rule.FS)
    protection, _ = ctx.path_policy.classify(path)
    birth = getattr(st, "st_birthtime", None)
    return GetFileInfoResult(
        action_id=ctx.action_id,
        path=path.shown,
        type=_kind(st.st_mode),
        size=st.st_size,
        mode=oct(stat.S_IMODE(st.st_mode)),
        modified=_iso(st.st_mtime),
        accessed=_iso(st.st_atime),
        created=_iso(birth) if isinstance(birth, float) else None,
        protected="read_only" if protection == "acceptance_input" else protection,  # (to the model it is)
    )


READ_TOOLS = [
    ToolSpec(
        name="read_text_file",
        description="Read a text file in the workspace (binary files are reported, not dumped). "
        "Optional head/tail: only the first/last N lines.",
        args_model=ReadTextFileArgs,
        result_model=ReadTextFileResult,
        handler=read_text_file,
        read_only=True,
        path_fields={"path": "read"},
        text=_read_text,
    ),
    ToolSpec(
        name="list_directory",
        description="List the entries of a workspace directory with their types.",
        args_model=PathArgs,
        result_model=ListDirectoryResult,
        handler=list_directory,
        read_only=True,
        path_fields={"path": "read"},
        text=_listing_text,
    ),
    ToolSpec(
        name="directory_tree",
        description="A recursive tree of a workspace directory (symlinks are listed, never followed).",
        args_model=DirectoryTreeArgs,
        result_model=DirectoryTreeResult,
        handler=directory_tree,
        read_only=True,
        path_fields={"path": "read"},
    ),
    ToolSpec(
        name="search_files",
        description="Find files and directories whose name or relative path matches a glob pattern (`*`, `?`, "
        "`[abc]`, `[!abc]`; `[*]` is a literal `*`), names spelt as listings show them (`\\xff` a byte that is not "
        "UTF-8, `\\\\` a backslash).",
        args_model=SearchFilesArgs,
        result_model=SearchFilesResult,
        handler=search_files,
        read_only=True,
        path_fields={"path": "read"},
    ),
    ToolSpec(
        name="get_file_info",
        description="Size, type, permissions, times, and whether policy protects the path.",
        args_model=PathArgs,
        result_model=GetFileInfoResult,
        handler=get_file_info,
        read_only=True,
        path_fields={"path": "read"},
    ),
]
