"""The wire's read side on the event loop (`body_mcp._stdin`): lines as the SDK's threaded reader makes them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from body_mcp._stdin import LoopLineReader, pipe_fd

pytestmark = pytest.mark.anyio


async def _lines(chunks: list[bytes]) -> list[str]:
    read_fd, write_fd = os.pipe()
    reader = LoopLineReader(read_fd, open(read_fd, encoding="utf-8", closefd=False))  # noqa: SIM115
    got: list[str] = []

    async def feed() -> None:
        for chunk in chunks:
            os.write(write_fd, chunk)
            await anyio.sleep(0.01)  # (each chunk its own read, where the reader can see them apart)
        os.close(write_fd)

    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(feed)
                async for line in reader:
                    got.append(line)
    finally:
        os.close(read_fd)
    return got


async def test_lines_split_across_reads_come_whole_with_their_newline() -> None:
    assert await _lines([b'{"a":', b' 1}\n{"b"', b": 2}\n"]) == ['{"a": 1}\n', '{"b": 2}\n']


async def test_crlf_and_cr_end_lines_as_in_text_mode_even_split_across_reads() -> None:
    assert await _lines([b"one\r", b"\ntwo\rthree\r\n"]) == ["one\n", "two\n", "three\n"]


async def test_undecodable_bytes_are_kept_as_lone_surrogates_and_a_character_split_across_reads_is_kept() -> None:
    """Not replaced by U+FFFD (the SDK's reader does that): a value the client never sent would be acted on; a lone
    surrogate is refused by the guard, naming the argument (`tests/review22b/test_mcp_input_bytes.py`)."""
    snowman = "\u2603".encode()
    assert await _lines([b"x\xff\n", snowman[:1], snowman[1:] + b"\n"]) == ["x\udcff\n", "\u2603\n"]


async def test_a_last_line_without_its_newline_is_still_read() -> None:
    assert await _lines([b"one\nlast"]) == ["one\n", "last"]


def test_while_serving_fd_0_reads_end_of_file_and_is_restored_after() -> None:
    script = (
        "import os, sys\n"
        "from body_mcp._stdin import claimed_stdin\n"
        "with claimed_stdin() as wire:\n"
        "    assert wire is not None\n"
        "    print(repr(os.read(0, 100)), flush=True)\n"
        "print(repr(os.read(0, 100)), flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], input=b"client\n", capture_output=True, check=True)
    assert done.stdout.decode().splitlines() == ["b''", "b'client\\n'"]


def test_stdin_from_a_regular_file_is_left_to_the_sdks_reader() -> None:
    script = "from body_mcp._stdin import claimed_stdin\nwith claimed_stdin() as wire:\n    print(wire is None)\n"
    with open(__file__, "rb") as stdin:
        done = subprocess.run([sys.executable, "-c", script], stdin=stdin, capture_output=True, check=True)
    assert done.stdout == b"True\n"


def test_a_pipe_is_the_wire_a_socket_only_where_asked_and_nothing_else(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    left, right = socket.socketpair()
    regular = (tmp_path / "f").open("w", encoding="utf-8")
    closed = (tmp_path / "g").open("w", encoding="utf-8")
    closed.close()
    try:
        with open(write_fd, "w", encoding="utf-8", closefd=False) as pipe:
            assert (pipe_fd(read_fd), pipe_fd(pipe)) == (read_fd, write_fd)
        assert (pipe_fd(left.fileno()), pipe_fd(left.fileno(), or_socket=True)) == (None, left.fileno())
        assert pipe_fd(regular) is None and pipe_fd(regular.fileno(), or_socket=True) is None
        assert pipe_fd(closed) is None  # (a file object with no descriptor left)
    finally:
        os.close(read_fd)
        os.close(write_fd)
        left.close()
        right.close()
        regular.close()


async def test_replies_to_a_pipe_small_and_large_arrive_whole_and_in_order() -> None:
    from body_mcp.server import _ReplyWire  # pyright: ignore[reportPrivateUsage]

    read_fd, write_fd = os.pipe()
    flushed: list[int] = []
    out = open(write_fd, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    wire = _ReplyWire(out, lambda: flushed.append(1))
    messages = ["small\n", "x" * 20_000 + "\n", "\u2603 small again\n"]
    received = bytearray()

    async def drain() -> None:
        while len(received) < sum(len(m.encode()) for m in messages):
            await anyio.wait_readable(read_fd)
            received.extend(os.read(read_fd, 65536))

    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(drain)
                for message in messages:
                    await wire.write(message)
                    await wire.flush()
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert received.decode() == "".join(messages)
    assert flushed == [1, 1, 1]
