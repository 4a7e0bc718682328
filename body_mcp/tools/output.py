"""A command's output: what its result shows, what is kept, and `read_command_output` to read the rest.

A command can print megabytes; the agent gets the start and the end of each stream
(`[sandbox] reply_head_bytes`, `reply_tail_bytes`) with a marker where the middle was left out,
and everything captured is kept with the call's audit event (`outputs.py`), to be read in pages.
Offsets are bytes of the stream's UTF-8 text; a page never splits a character.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox import RunResult
from shared_protocol import (
    CommandOutput,
    OutputStream,
    ReadCommandOutputArgs,
    ReadCommandOutputResult,
    RunCommandArgs,
    StreamOutput,
)

from ._spec import ToolContext, ToolSpec


@dataclass(kw_only=True, frozen=True)
class ShownOutput:
    """What a command's result shows of its output."""

    stdout: str
    stderr: str
    summary: CommandOutput
    dropped: bool
    """Some of it was past `[sandbox] max_output_bytes`: not kept at all."""

    @property
    def truncated(self) -> bool:
        """Something printed is not in the result's text."""
        cut = self.summary.stdout.omitted_from is not None or self.summary.stderr.omitted_from is not None
        return cut or self.dropped


def keep_output(ctx: ToolContext[RunCommandArgs], run: RunResult) -> ShownOutput:
    """Keep both streams with the call's audit event; return what its result shows of them."""
    stdout, stdout_summary = _keep(ctx, "stdout", run.stdout, run.stdout_bytes, dropped=run.stdout_truncated)
    stderr, stderr_summary = _keep(ctx, "stderr", run.stderr, run.stderr_bytes, dropped=run.stderr_truncated)
    return ShownOutput(
        stdout=stdout,
        stderr=stderr,
        summary=CommandOutput(stdout=stdout_summary, stderr=stderr_summary),
        dropped=run.stdout_truncated or run.stderr_truncated,
    )


def _keep(
    ctx: ToolContext[RunCommandArgs], stream: OutputStream, text: str, printed: int | None, *, dropped: bool
) -> tuple[str, StreamOutput]:
    data = text.encode()
    kept = ctx.deps.outputs.keep(
        ctx.effects.writes,
        action_id=ctx.action_id,
        stream=stream,
        data=data,
        printed=max(printed or 0, len(data)),  # (a scripted run does not count; invalid UTF-8 grows when replaced)
        truncated=dropped,
    )
    outputs: dict[str, Any] = ctx.effects.detail.setdefault("output", {})
    outputs[stream] = {"bytes": kept.printed, "kept": kept.size, "sha256": kept.sha256}
    cfg = ctx.deps.sandbox_config
    return _shown(
        data,
        ctx.action_id,
        stream,
        head=cfg.reply_head_bytes,
        tail=cfg.reply_tail_bytes,
        printed=kept.printed,
        dropped=dropped,
    )


def _shown(
    data: bytes, action_id: str, stream: OutputStream, *, head: int, tail: int, printed: int, dropped: bool
) -> tuple[str, StreamOutput]:
    """The start and the end of a stream, the middle replaced by a marker saying where it is and how to read it."""
    size = len(data)
    if size <= head + tail:
        summary = StreamOutput(printed=printed, kept=size)
        text = data.decode(errors="replace")
    else:
        start, end = _char_boundary(data, head), _next_char(data, size - tail)
        summary = StreamOutput(printed=printed, kept=size, omitted_from=start, omitted_to=end)
        text = (
            data[:start].decode(errors="replace")
            + f"\n[swarm: {end - start:,} bytes of {stream} left out here (bytes {start:,} to {end:,} of {size:,}); "
            f'read them with read_command_output(action_id="{action_id}", stream="{stream}", offset={start})]\n'
            + data[end:].decode(errors="replace")
        )
    if dropped:
        text += (
            f"\n[swarm: the command printed {printed:,} bytes on {stream}; only the first {size:,} were kept "
            "([sandbox] max_output_bytes)]\n"
        )
    return text, summary


def _char_boundary(data: bytes, at: int) -> int:
    """`at`, or the start of the character it falls inside."""
    while 0 < at < len(data) and data[at] & 0xC0 == 0x80:
        at -= 1
    return at


def _next_char(data: bytes, at: int) -> int:
    """`at`, or the start of the character after the one it falls inside."""
    while 0 < at < len(data) and data[at] & 0xC0 == 0x80:
        at += 1
    return at


async def read_command_output(ctx: ToolContext[ReadCommandOutputArgs]) -> ReadCommandOutputResult:
    args = ctx.args
    kept, data = ctx.deps.outputs.get(args.action_id, args.stream)
    start = _next_char(data, min(args.offset, kept.size))
    end = _char_boundary(data, min(start + args.limit, kept.size))
    if end <= start < kept.size:  # (a limit shorter than the character there: the whole character)
        end = _next_char(data, start + 1)
    return ReadCommandOutputResult(
        action_id=ctx.action_id,
        stream=args.stream,
        content=data[start:end].decode(errors="replace"),
        offset=start,
        next_offset=end,
        total=kept.size,
        eof=end >= kept.size,
        truncated=kept.truncated,
    )


OUTPUT_TOOLS = [
    ToolSpec(
        name="read_command_output",
        description="Read the output of an earlier run_command (its action_id) in pages: the part its result left "
        "out of a long stream, or all of it. Offsets are bytes; stream is stdout or stderr.",
        args_model=ReadCommandOutputArgs,
        result_model=ReadCommandOutputResult,
        handler=read_command_output,
        read_only=True,
        idempotent=True,
    ),
]

__all__ = ["OUTPUT_TOOLS", "ShownOutput", "keep_output"]
