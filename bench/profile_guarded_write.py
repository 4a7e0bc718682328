"""Where a guarded `write_file` spends its time, in process: cProfile over the event loop's thread and the audit
writer's thread, over a few hundred calls against a real workspace (no stdio, no MCP client).

    uv run python bench/profile_guarded_write.py [--calls 300] [--top 25] [--durability power_loss] [--cpu]

Each call is followed by what the stdio transport does once its reply is written (`replies.run()`, then the
commit and anchor the writer owes), so both threads do a serving body's whole work per call. Prints the median
wall time per call, then each thread's top functions by own time and by cumulative time. With `--cpu` the profiles
count each thread's CPU time (`time.thread_time_ns`), not wall time: waits (a sync, the other thread holding the
GIL, the queue) cost nothing there, so what is left is what the machine's load does not distort; the process's
CPU per call (all threads) is printed too.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio

from body_mcp import Body, BodySettings
from shared_protocol.config import parse_config


def _config(durability: str) -> dict[str, object]:
    return {
        "limits": {"calls_per_minute": 1_000_000, "file_mods_per_hour": 1_000_000},
        "policy": {"approval_min_files": 1_000_000},
        "audit": {"durability": durability},
    }


async def _calls(body: Body, count: int, times: list[float]) -> None:
    body.replies.flushed = True
    for n in range(count):
        args = {"path": f"w/{n % 20}.txt", "content": f"line {n}\n" * 20, "rationale": "bench write"}
        start = time.perf_counter()
        out = await body.call_tool("write_file", args)
        times.append(time.perf_counter() - start)
        assert not out.is_error, out.text
        body.replies.run()
        await body.audit_writer.settled()


def _print(title: str, profile: cProfile.Profile, top: int) -> None:
    for sort in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).strip_dirs().sort_stats(sort).print_stats(top)
        print(f"== {title}, by {sort}")
        print("\n".join(line for line in out.getvalue().splitlines()[4:] if line.strip()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--durability", choices=("power_loss", "crash"), default="power_loss")
    parser.add_argument("--cpu", action="store_true", help="profile each thread's CPU time, not wall time")
    args = parser.parse_args()
    profiler: Callable[[], cProfile.Profile] = (
        (lambda: cProfile.Profile(time.thread_time_ns, 1e-9)) if args.cpu else cProfile.Profile
    )
    with tempfile.TemporaryDirectory() as tmp:
        workspace, home = Path(tmp, "ws"), Path(tmp, "home")
        (workspace / "w").mkdir(parents=True)
        home.mkdir()
        settings = BodySettings(workspace=workspace, home=home, config=parse_config(_config(args.durability)))
        body = Body(settings)
        try:
            warm: list[float] = []
            anyio.run(_calls, body, 50, warm)
            loop_profile, writer_profile = profiler(), profiler()
            executor = body.audit_writer._executor  # pyright: ignore[reportPrivateUsage]  # (its one thread)
            executor.submit(writer_profile.enable).result()
            times: list[float] = []
            cpu = time.process_time()
            loop_profile.enable()
            anyio.run(_calls, body, args.calls, times)
            loop_profile.disable()
            cpu = time.process_time() - cpu
            executor.submit(writer_profile.disable).result()
        finally:
            body.close()
    print(f"{args.calls} guarded write_file calls ({args.durability}): median {statistics.median(times) * 1000:.3f} ms")
    print(f"the process's CPU (all threads, profiled): {cpu / args.calls * 1000:.3f} ms a call")
    _print("the event loop's thread", loop_profile, args.top)
    _print("the audit writer's thread", writer_profile, args.top)


if __name__ == "__main__":
    main()
