"""What a guarded `write_file` asks of the file system for the file it replaces: the pre-image read in one `read`
when the file holds what its descriptor's size says, and the mode written known without a `stat` to read it back.

Each test counts the calls a real write makes (the functions wrapped, not replaced) and checks what was recorded
against the file on disk, so a saving that recorded something else would fail.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from body_mcp import Body, _fsops
from body_mcp.tools import fs_write

pytestmark = pytest.mark.anyio


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    real: Callable[..., Any] = getattr(module.os, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module.os, name, counted)
    return calls


def _records(body: Body, action_id: str) -> list[Any]:
    return [stored.record for stored in body.undo.pending_records(action_id)]


async def test_a_write_over_a_file_reads_its_pre_image_once_and_records_the_mode_without_a_stat(
    body: Body, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = workspace / "a.sh"
    target.write_text("old\n" * 1000)
    os.chmod(target, 0o4750)  # (setuid: not written again)
    reads = _counting(monkeypatch, _fsops, "read")
    stats = _counting(monkeypatch, fs_write, "stat")  # (`os.stat` itself: every caller's, filtered below)
    out = await body.call_tool("write_file", {"path": "a.sh", "content": "new\n", "rationale": "r"})
    monkeypatch.undo()
    assert not out.is_error, out.text
    assert len(reads) == 1  # the whole file in one read: no second one to find its end
    assert [args for args in stats if args[0] == "a.sh"] == [("a.sh",)]  # the pre-image's: the mode not read back
    (record,) = _records(body, out.action_id)
    assert record.before.mode == 0o4750 and record.before.sha256 is not None
    assert body.undo.load_blob(record.before.sha256) == b"old\n" * 1000  # the pre-image kept whole
    assert record.after.mode == stat.S_IMODE(target.stat().st_mode) == 0o750
    assert target.read_text() == "new\n"
    undo = await body.call_tool("undo", {"id": out.action_id, "rationale": "r"})
    assert not undo.is_error, undo.text
    assert target.read_text() == "old\n" * 1000


async def test_a_new_files_mode_is_read_back_and_an_empty_or_growing_file_is_read_to_its_end(
    body: Body, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stats = _counting(monkeypatch, fs_write, "stat")
    out = await body.call_tool("write_file", {"path": "new.txt", "content": "x", "rationale": "r"})
    assert not out.is_error, out.text
    assert [args for args in stats if args[0] == "new.txt"] == [("new.txt",)] * 2  # the umask's mode read back
    (record,) = _records(body, out.action_id)
    assert record.after.mode == stat.S_IMODE((workspace / "new.txt").stat().st_mode)
    monkeypatch.undo()

    (workspace / "empty.txt").write_bytes(b"")
    parent = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _fsops.read_file_at(parent, "empty.txt", size_hint=0) == b""
        # Grown since its size was seen: read on to its end, whatever the hint said.
        (workspace / "grown.txt").write_bytes(b"y" * 5000)
        assert _fsops.read_file_at(parent, "grown.txt", size_hint=10) == b"y" * 5000
        (workspace / "big.txt").write_bytes(b"z" * (3 << 20))  # (over one read's 1 MiB with no hint)
        assert _fsops.read_file_at(parent, "big.txt") == b"z" * (3 << 20)
    finally:
        os.close(parent)


async def test_a_short_read_that_is_not_the_whole_file_reads_on(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workspace / "f.txt").write_bytes(b"abcdefgh")
    real = os.read

    def short(fd: int, size: int) -> bytes:  # as a FUSE file system may answer: fewer bytes than there are
        return real(fd, min(size, 3))

    monkeypatch.setattr(_fsops.os, "read", short)
    parent = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _fsops.read_file_at(parent, "f.txt", size_hint=8) == b"abcdefgh"
    finally:
        os.close(parent)
