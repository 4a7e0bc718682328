# pyright: strict
"""Benchmark of the sandbox: what a run costs over a bare process, and what change detection costs.

    uv run python bench/bench_sandbox_staging.py [--runs 30]

Prints the median wall time of `true` run bare and through BwrapOverlaySandbox (and the copy backend), then,
for workspaces of 100 and 10,000 files, the time to run a command that edits 10 files, with the share spent
reading the changes (overlay: the upper layer; copy: copying the workspace, then diffing it).
"""

from __future__ import annotations

import argparse
import functools
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from sandbox import BwrapOverlaySandbox, CopyStagingSandbox, SandboxSpec, default_toolchain_paths
from sandbox._copy_tree import copy_workspace, diff_copy
from sandbox._overlay_upper import read_upper
from sandbox._staged import StagedDirRun


def make_workspace(root: Path, files: int) -> Path:
    """`files` small files spread over directories of 100."""
    workspace = root / f"ws-{files}"
    for index in range(files):
        directory = workspace / f"d{index // 100:03d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{index:05d}.txt").write_text(f"file {index}\n")
    return workspace.resolve()


def spec_for(workspace: Path, argv: list[str]) -> SandboxSpec:
    return SandboxSpec(
        workspace=workspace,
        argv=argv,
        env={"PATH": "/usr/bin:/bin"},
        toolchain_paths=default_toolchain_paths(),
        hidden_paths=(),
    )


async def median_s(runs: int, once: Callable[[], Awaitable[object]]) -> float:
    await once()  # warm caches
    samples: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        await once()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


async def read_in_thread(upper: Path, workspace: Path) -> object:
    return await anyio.to_thread.run_sync(read_upper, upper, workspace)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="swarm-bench-") as tmp:
        root = Path(tmp)
        staging_root = root / "staging"
        overlay = BwrapOverlaySandbox(staging_root=staging_root)
        copy = CopyStagingSandbox(staging_root=staging_root)
        for sandbox in (overlay, copy):
            if not sandbox.available().ok:
                raise SystemExit(sandbox.available().reason)

        async def staged(sandbox: BwrapOverlaySandbox | CopyStagingSandbox, spec: SandboxSpec) -> None:
            async with await sandbox.run(spec):
                pass

        small = make_workspace(root, 100)
        bare = await median_s(runs, lambda: anyio.run_process(["true"]))
        through_overlay = await median_s(runs, lambda: staged(overlay, spec_for(small, ["true"])))
        through_copy = await median_s(runs, lambda: staged(copy, spec_for(small, ["true"])))
        print(f"`true`, median of {runs} runs")
        print(f"  bare subprocess        {ms(bare)}")
        print(f"  bwrap-overlay          {ms(through_overlay)}   overhead {ms(through_overlay - bare)}")
        print(f"  copy (100 files)       {ms(through_copy)}   overhead {ms(through_copy - bare)}")

        edit = ["sh", "-c", "for f in d000/f0000*.txt; do echo changed >> $f; done"]
        print("\nchange detection, a command editing 10 files (median)")
        for files in (100, 10_000):
            workspace = small if files == 100 else make_workspace(root, files)
            spec = spec_for(workspace, edit)
            overlay_total = await median_s(runs, functools.partial(staged, overlay, spec))
            copy_total = await median_s(max(3, runs // 5), functools.partial(staged, copy, spec))
            async with await overlay.run(spec) as run:
                assert isinstance(run, StagedDirRun) and run.write_area is not None and len(run.changes) == 10
                upper = run.write_area / "upper"
                read = await median_s(runs, functools.partial(read_in_thread, upper, workspace))
            copy_root = root / "copy-probe"
            start = time.perf_counter()
            copied = copy_workspace(workspace, copy_root, hidden=())
            copy_s = time.perf_counter() - start
            start = time.perf_counter()
            diff_copy(workspace, copied)
            diff_s = time.perf_counter() - start
            await anyio.to_thread.run_sync(shutil.rmtree, copy_root)
            print(f"  {files:>6} files  overlay run {ms(overlay_total)} (reading upper {ms(read)})")
            print(f"  {files:>6} files  copy run    {ms(copy_total)} (copy {ms(copy_s)}, diff {ms(diff_s)})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30)
    anyio.run(main, parser.parse_args().runs)
