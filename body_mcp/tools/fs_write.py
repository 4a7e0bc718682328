"""Mutating file tools: write_file, edit_file, create_directory, move_file, delete_file.

Each one captures pre-images before it changes anything (undo), reports what it changed,
and in shadow mode reports what it would change (with a diff) and changes nothing.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import stat
from typing import Any

from shared_protocol import (
    NO_IMPACT,
    CreateDirectoryArgs,
    DeleteFileArgs,
    EditFileArgs,
    Impact,
    MoveFileArgs,
    MutationResult,
    RefusalCode,
    WriteFileArgs,
)
from shared_protocol.refusals import Rule
from shared_protocol.tools import ChangeKind

from .. import _fsops
from .._fsops import EntryState
from ..confinement import Descriptor, Workspace, WorkspacePath
from ..exceptions import AcceptanceInput, InvalidPath, ProtectedPath, ToolRefused
from ..names import representable, shown
from ..policy import PathPolicy, acceptance_input_message
from ._spec import ToolContext, ToolSpec
from .fs_read import decode_text

_DIFF_CAP = 64 * 1024
_ONE_FILE = Impact(files=1)


def _files(count: int) -> Impact:
    return _ONE_FILE if count == 1 else Impact(files=count)  # (models are immutable: one instance serves)


def unified_diff(path: str, old: str | None, new: str | None) -> str:
    diff = "".join(
        difflib.unified_diff(
            (old or "").splitlines(keepends=True),
            (new or "").splitlines(keepends=True),
            fromfile=f"a/{path}" if old is not None else "/dev/null",
            tofile=f"b/{path}" if new is not None else "/dev/null",
        )
    )
    return diff if len(diff) <= _DIFF_CAP else diff[:_DIFF_CAP] + "\n... (diff truncated)\n"


def _result(ctx: ToolContext[Any], changes: list[tuple[str, ChangeKind]], diff: str = "") -> dict[str, Any]:
    ctx.effects.files = [path for path, _ in changes]
    ctx.effects.impact = _files(len(changes)) if ctx.mode == "live" else NO_IMPACT
    ctx.effects.detail["planned_files"] = len(changes)
    shown_changes: list[tuple[str, ChangeKind]] = [
        (shown(path), kind) for path, kind in changes
    ]  # (a name as listings show it)
    return MutationResult.as_json(action_id=ctx.action_id, mode=ctx.mode, changes=shown_changes, diff=diff)


def _missing_parents(ctx: ToolContext[Any], parts: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The ancestors of `parts` that do not exist yet (shallowest first): writing there creates each of them, and
    each counts like a file (blast radius, approval, the hourly limit), as `create_directory`'s do."""
    workspace = ctx.deps.workspace
    if len(parts) <= 1 or workspace.is_dir(parts[:-1]):
        return []
    for end in range(1, len(parts)):
        state, _ = _fsops.read_entry(workspace, parts[:end])
        if state.type == "absent":
            return [parts[:stop] for stop in range(end, len(parts))]
    return []


def _existing_parent(workspace: Workspace, parts: tuple[str, ...]) -> int | None:
    """A descriptor of the parent of `parts` (the caller closes it), or None if one of its ancestors is missing."""
    try:
        return workspace.open_dir_fd(parts[:-1])
    except ToolRefused as exc:
        if exc.code != RefusalCode.NOT_FOUND:
            raise
        return None


async def _count_parents(ctx: ToolContext[Any], parts: tuple[str, ...], files: int, paths: list[str]) -> list[str]:
    """Hold an action that changes `files` entries at `paths`, plus the missing ancestors of `parts` it creates, to
    the rules (its measured impact); the ancestors' paths."""
    missing = ["/".join(p) for p in _missing_parents(ctx, parts)]
    if missing:
        await ctx.check_measured(Impact(files=files + len(missing)), [*missing, *paths])
    return missing


def _existing_text(ctx: ToolContext[Any], path: WorkspacePath, *, must_exist: bool) -> tuple[EntryState, str | None]:
    state, data = _fsops.read_entry(ctx.deps.workspace, path.parts, max_bytes=ctx.deps.files.max_read_bytes)
    if state.type == "absent":
        if must_exist:
            raise ToolRefused(f"'{path.shown}' does not exist", code=RefusalCode.NOT_FOUND, rule=Rule.FS)
        return state, None
    _check_writable(path, state)
    return state, decode_text(data) if data is not None else None


def _write(
    ctx: ToolContext[Any],
    path: WorkspacePath,
    data: bytes,
    before: EntryState | None = None,
    *,
    parent_fd: int | None = None,
) -> EntryState:
    """Write with an undo record; returns what was there before. `parent_fd`: a descriptor of the parent, opened
    already by the caller (closed here)."""
    recorder = ctx.recorder()
    # One descriptor of the parent for the pre-image and the write: nothing between them can be redirected.
    with Descriptor(recorder.open_parent(path.parts) if parent_fd is None else parent_fd) as parent:
        if not path.parts:  # (the workspace root, `""`, `.` or the workspace's own path: it has no name to write)
            raise ToolRefused(f"'{path.shown}' is a directory", code=RefusalCode.NOT_A_FILE, rule=Rule.FS)
        if before is None:
            before = recorder.before_at(parent, path.parts)
        _check_writable(path, before)
        kept = before.mode if before.type == "file" else None
        _fsops.write_at(parent, path.name, data, mode=kept)
        # The mode written (git_commit compares it, an executable bit included): over a file, the old one's, set
        # exactly by `write_at`'s fchmod (its setuid, setgid and sticky bits left out), so no stat to read it back;
        # a new file's depends on the umask, read back through the same descriptor.
        if kept is not None:
            mode = _fsops.safe_mode(kept)[0]
        else:
            mode = stat.S_IMODE(os.stat(path.name, dir_fd=parent, follow_symlinks=False).st_mode)
    recorder.changed(
        path.parts, before, after=EntryState(type="file", sha256=hashlib.sha256(data).hexdigest(), mode=mode)
    )
    return before


def _keep_pre_image(ctx: ToolContext[Any], state: EntryState, text: str) -> EntryState:
    """Keep already-read content as the pre-image instead of reading the file again."""
    recorder = ctx.recorder()
    if state.sha256 is not None:
        ctx.deps.undo.keep_blob(state.sha256, text.encode(), recorder.blobs)
    return state


def _check_writable(path: WorkspacePath, state: EntryState) -> None:
    if state.type == "dir":
        raise ToolRefused(f"'{path.shown}' is a directory", code=RefusalCode.NOT_A_FILE, rule=Rule.FS)
    if state.type == "special":
        raise ToolRefused(
            f"'{path.shown}' is a device, FIFO or socket", code=RefusalCode.SPECIAL_FILE, rule=Rule.CONFINEMENT
        )


async def write_file(ctx: ToolContext[WriteFileArgs]) -> dict[str, Any]:
    args = ctx.args
    path = ctx.paths["path"]
    data = args.content.encode()
    cap = ctx.deps.files.max_write_bytes
    if len(data) > cap:
        raise ToolRefused(
            f"content is {len(data)} bytes, over the {cap}-byte write cap",
            code=RefusalCode.TOO_LARGE,
            rule=Rule.MAX_WRITE_BYTES,
        )
    if ctx.mode == "shadow":
        parents = await _count_parents(ctx, path.parts, 1, [path.rel])
        state, old = _existing_text(ctx, path, must_exist=False)
        diff = unified_diff(path.rel, old if state.type != "absent" else None, args.content)
    else:
        # The parent, walked once for the count of missing ancestors and the write alike (the usual case: it
        # exists, so none is missing, and nothing is awaited before the write uses it).
        parent_fd = _existing_parent(ctx.deps.workspace, path.parts)
        parents = [] if parent_fd is not None else await _count_parents(ctx, path.parts, 1, [path.rel])
        state, diff = _write(ctx, path, data, parent_fd=parent_fd), ""
    created: list[tuple[str, ChangeKind]] = [(parent, "created") for parent in parents]
    return _result(ctx, [*created, (path.rel, "created" if state.type == "absent" else "modified")], diff)


async def edit_file(ctx: ToolContext[EditFileArgs]) -> dict[str, Any]:
    args = ctx.args
    path = ctx.paths["path"]
    state, old = _existing_text(ctx, path, must_exist=True)
    if old is None:
        raise ToolRefused(
            f"'{path.shown}' is binary: edit_file works on text", code=RefusalCode.NOT_A_FILE, rule=Rule.FS
        )
    new = old
    for index, edit in enumerate(args.edits):
        count = new.count(edit.old_text)
        if count != 1:
            where = "not found" if count == 0 else f"found {count} times"
            raise ToolRefused(
                f"edit {index + 1}: old_text {where} in '{path.shown}'; it must match exactly once "
                "(include more surrounding lines to make it unique)",
                code=RefusalCode.EDIT_MISMATCH,
                rule=Rule.EXACT_MATCH,
            )
        new = new.replace(edit.old_text, edit.new_text, 1)
    diff = unified_diff(path.rel, old, new)
    if args.dry_run:
        ctx.effects.files = [path.rel]
        return MutationResult.as_json(action_id=ctx.action_id, mode=ctx.mode, changes=[], diff=diff)
    data = new.encode()
    if len(data) > ctx.deps.files.max_write_bytes:
        raise ToolRefused(
            "the edited file would exceed the write cap", code=RefusalCode.TOO_LARGE, rule=Rule.MAX_WRITE_BYTES
        )
    if ctx.mode == "live" and new != old:
        _write(ctx, path, data, before=_keep_pre_image(ctx, state, old))
    changes: list[tuple[str, ChangeKind]] = [(path.rel, "modified")] if new != old else []
    return _result(ctx, changes, diff)


async def create_directory(ctx: ToolContext[CreateDirectoryArgs]) -> dict[str, Any]:
    path = ctx.paths["path"]
    missing: list[tuple[str, ...]] = []
    for end in range(1, len(path.parts) + 1):
        state, _ = _fsops.read_entry(ctx.deps.workspace, path.parts[:end])
        if state.type == "absent":
            missing.append(path.parts[:end])
        elif state.type != "dir":
            raise ToolRefused(
                f"'{'/'.join(path.parts[:end])}' exists and is not a directory",
                code=RefusalCode.NOT_A_DIRECTORY,
                rule=Rule.FS,
            )
    if len(missing) > 1:  # every directory created counts, like a file (planned: one)
        await ctx.check_measured(Impact(files=len(missing)), ["/".join(p) for p in missing])
    if missing and ctx.mode == "live":
        recorder = ctx.recorder()
        # Record the deepest first: undo walks records backwards, so it removes parents last.
        _fsops.make_dir(ctx.deps.workspace, path.parts)
        for parts in missing:
            recorder.changed(parts, _fsops.ABSENT)
    return _result(ctx, [("/".join(p), "created") for p in missing])


def _subtree_files(workspace: Workspace, path: WorkspacePath) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []

    def visit(parts: tuple[str, ...]) -> None:
        with workspace.open_dir(parts) as fd, os.scandir(os.dup(fd)) as it:
            entries = list(it)
        for entry in entries:
            child = (*parts, entry.name)
            found.append(child)
            if entry.is_dir(follow_symlinks=False):
                visit(child)

    visit(path.parts)
    return found


def _check_subtree_policy(policy: PathPolicy, entries: list[tuple[str, ...]]) -> None:
    """Every entry of a moved directory is one the move may change: not protected, and a name UTF-8 can hold (as
    the directory's own must be: a change to it could not be audited or recorded for undo)."""
    for parts in entries:
        rel = "/".join(parts)
        if not representable(parts[-1]):
            raise InvalidPath(
                f"'{shown(rel)}' inside it is not UTF-8 on disk: moving it could not be audited or recorded for "
                "undo; rename it by a command first"
            )
        level, pattern = policy.classify_parts(parts)
        if level == "acceptance_input":
            raise AcceptanceInput(acceptance_input_message(shown(rel), pattern))
        if level != "none":
            raise ProtectedPath(f"'{shown(rel)}' inside it is protected (matches '{pattern}')")


async def move_file(ctx: ToolContext[MoveFileArgs]) -> dict[str, Any]:
    source, destination = ctx.paths["source"], ctx.paths["destination"]
    if not source.parts:
        raise ToolRefused("the workspace root cannot be moved", code=RefusalCode.INVALID_PATH, rule=Rule.CONFINEMENT)
    state, _ = _fsops.read_entry(ctx.deps.workspace, source.parts)
    if state.type == "absent":
        raise ToolRefused(f"'{source.shown}' does not exist", code=RefusalCode.NOT_FOUND, rule=Rule.FS)
    if state.type == "special":
        raise ToolRefused(
            f"'{source.shown}' is a device, FIFO or socket", code=RefusalCode.SPECIAL_FILE, rule=Rule.CONFINEMENT
        )
    if destination.parts[: len(source.parts)] == source.parts:
        raise ToolRefused("cannot move a directory into itself", code=RefusalCode.INVALID_PATH, rule=Rule.FS)
    if ctx.deps.workspace.lstat(destination) is not None:
        raise ToolRefused(f"'{destination.shown}' already exists", code=RefusalCode.ALREADY_EXISTS, rule=Rule.FS)
    moved_files = 1
    if state.type == "dir":
        inside = _subtree_files(ctx.deps.workspace, source)
        _check_subtree_policy(ctx.path_policy, inside)
        # Where each lands too: a package moved to a module's name (`pkg/` to `json/`) would shadow it.
        _check_subtree_policy(ctx.path_policy, [(*destination.parts, *p[len(source.parts) :]) for p in inside])
        moved_files = 1 + len(inside)  # the directory and everything in it, directories included
        below = ["/".join(p[len(source.parts) :]) for p in inside]
        paths = [source.rel, destination.rel, *(f"{source.rel}/{b}" for b in below)]
        paths += [f"{destination.rel}/{b}" for b in below]  # (gone from one place, new in the other)
        parents = await _count_parents(ctx, destination.parts, moved_files, paths)
        if not parents:
            await ctx.check_measured(Impact(files=moved_files), paths)
    else:
        parents = await _count_parents(ctx, destination.parts, moved_files, [source.rel, destination.rel])
    moved_files += len(parents)
    moved: list[tuple[str, ChangeKind]] = [(source.rel, "moved"), (destination.rel, "created")]
    changes: list[tuple[str, ChangeKind]] = [*((parent, "created") for parent in parents), *moved]
    if ctx.mode == "live":
        recorder = ctx.recorder()
        recorder.make_parents(destination.parts)
        _fsops.rename(ctx.deps.workspace, source.parts, destination.parts)
        recorder.renamed(source.parts, destination.parts, state)
    result = _result(ctx, changes)
    ctx.effects.impact = Impact(files=moved_files) if ctx.mode == "live" else NO_IMPACT
    return result


async def delete_file(ctx: ToolContext[DeleteFileArgs]) -> dict[str, Any]:
    path = ctx.paths["path"]
    if not path.parts:
        raise ToolRefused("the workspace root cannot be deleted", code=RefusalCode.INVALID_PATH, rule=Rule.CONFINEMENT)
    st = ctx.deps.workspace.lstat(path)
    if st is None:
        raise ToolRefused(f"'{path.shown}' does not exist", code=RefusalCode.NOT_FOUND, rule=Rule.FS)
    if stat.S_ISDIR(st.st_mode):
        with ctx.deps.workspace.open_dir(path.parts) as fd:
            if os.listdir(fd):
                raise ToolRefused(
                    f"directory '{path.shown}' is not empty: delete its files first (or run_command in the sandbox)",
                    code=RefusalCode.DIRECTORY_NOT_EMPTY,
                    rule=Rule.FS,
                )
    diff = ""
    if ctx.mode == "shadow" and stat.S_ISREG(st.st_mode):
        _, old = _existing_text(ctx, path, must_exist=True)
        diff = unified_diff(path.rel, old, None)
    if ctx.mode == "live":
        recorder = ctx.recorder()
        before = recorder.before(path.parts)
        _fsops.remove_entry(ctx.deps.workspace, path.parts)
        recorder.changed(path.parts, before)
    return _result(ctx, [(path.rel, "deleted")], diff)


def _one_file(_args: object) -> Impact:
    return _ONE_FILE


def _edit_plan(args: EditFileArgs) -> Impact:
    return NO_IMPACT if args.dry_run else _ONE_FILE


WRITE_TOOLS = [
    ToolSpec(
        name="write_file",
        description="Create or overwrite a text file, atomically. Undoable.",
        args_model=WriteFileArgs,
        result_model=MutationResult,
        handler=write_file,
        read_only=False,
        destructive=True,
        idempotent=True,
        path_fields={"path": "write"},
        plan=_one_file,
    ),
    ToolSpec(
        name="edit_file",
        description="Replace text in a file: each old_text must match exactly once. "
        "dry_run shows the diff only. Undoable.",
        args_model=EditFileArgs,
        result_model=MutationResult,
        handler=edit_file,
        read_only=False,
        destructive=True,
        path_fields={"path": "write"},
        plan=_edit_plan,
    ),
    ToolSpec(
        name="create_directory",
        description="Create a directory and any missing parents (one modification). Undoable.",
        args_model=CreateDirectoryArgs,
        result_model=MutationResult,
        handler=create_directory,
        read_only=False,
        destructive=False,
        idempotent=True,
        path_fields={"path": "write"},
        plan=_one_file,
    ),
    ToolSpec(
        name="move_file",
        description="Move or rename a file or directory; fails if the destination exists. Undoable.",
        args_model=MoveFileArgs,
        result_model=MutationResult,
        handler=move_file,
        read_only=False,
        destructive=True,
        path_fields={"source": "write_nofollow", "destination": "write_nofollow"},
        plan=_one_file,
    ),
    ToolSpec(
        name="delete_file",
        description="Delete a file, a symlink or an empty directory. Undoable.",
        args_model=DeleteFileArgs,
        result_model=MutationResult,
        handler=delete_file,
        read_only=False,
        destructive=True,
        path_fields={"path": "write_nofollow"},
        plan=_one_file,
    ),
]
