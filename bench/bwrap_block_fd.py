"""What starting bwrap ahead would save: the sandbox's own bwrap line for `true`, whole, against the same line
started with `--block-fd` and timed only from the byte that releases it to its exit (bwrap 0.8 reads the block
fd after every mount, the pivot and dropping its privileges; after it: seccomp, umask, `--chdir`, `PWD`,
`--new-session`'s setsid, the fork of its pid 1, the exec). Bare `bwrap --ro-bind / / true` alongside.

    uv run python bench/bwrap_block_fd.py [--rounds 25]

Nothing of the sandbox uses `--block-fd` (see README, #22): this measures the lever before building it. Each
blocked bwrap is given `--settle-s` to finish its set-up before it is released (set-up not being observable
from outside); the rounds alternate the three, so the machine's slow moments fall on all alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_run_command import _sandbox_bwrap  # pyright: ignore[reportPrivateUsage]


def main(rounds: int, settle_s: float) -> None:
    with tempfile.TemporaryDirectory() as raw:
        tmp = Path(raw)
        ws = tmp / "ws"
        ws.mkdir()
        (ws / ".env").write_text("x")
        status = os.open(tmp / "status", os.O_WRONLY | os.O_CREAT, 0o600)
        line = _sandbox_bwrap("bwrap", ws, tmp, status)
        whole: list[float] = []
        released: list[float] = []
        bare: list[float] = []
        for _ in range(rounds):
            start = time.perf_counter()
            subprocess.run(line, pass_fds=[status], check=True)
            whole.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run(["bwrap", "--ro-bind", "/", "/", "true"], check=True)
            bare.append(time.perf_counter() - start)
            block_r, block_w = os.pipe()
            process = subprocess.Popen([line[0], "--block-fd", str(block_r), *line[1:]], pass_fds=[status, block_r])
            os.close(block_r)
            time.sleep(settle_s)
            start = time.perf_counter()
            os.write(block_w, b"x")
            process.wait()
            released.append(time.perf_counter() - start)
            os.close(block_w)
            if process.returncode != 0:
                raise SystemExit(f"the blocked bwrap exited {process.returncode}")
        os.close(status)

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.1f}"

    load = os.getloadavg()
    print(f"{rounds} rounds, load average {load[0]:.1f} {load[1]:.1f} (medians, ms)")
    print(f"the sandbox's bwrap line, whole:            {ms(whole)}")
    print(f"the same with --block-fd, from its release: {ms(released)}")
    print(f"bare bwrap --ro-bind / / true:              {ms(bare)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--settle-s", type=float, default=0.3)
    options = parser.parse_args()
    main(options.rounds, options.settle_s)
