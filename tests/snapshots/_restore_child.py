"""A restore that stops at a named step and waits to be killed: `python -m tests.snapshots._restore_child`.

Arguments: WORKSPACE STATE_DIR SNAPSHOT_ID STEP NTH EXCHANGE TRUST_FRESH (1: link unchanged files even if
fresh). At the NTH time STEP is reached it prints PAUSED and sleeps, so the parent can SIGKILL it exactly there.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from body_mcp.snapshots import SnapshotSettings, Snapshotter, _swap, _walk


def main() -> None:
    workspace, state_dir, snapshot_id, step, nth, exchange, trust_fresh = sys.argv[1:8]
    if trust_fresh == "1":
        _walk.RACY_NS = 0
    seen = 0

    def hook(name: str) -> None:
        nonlocal seen
        if name == step:
            seen += 1
            if seen == int(nth):
                print("PAUSED", flush=True)
                time.sleep(120)

    _swap.STEP_HOOK = hook
    settings = SnapshotSettings(workspace=Path(workspace), state_dir=Path(state_dir))
    Snapshotter(settings, exchange=exchange == "1").restore(snapshot_id)
    print("FINISHED", flush=True)


if __name__ == "__main__":
    main()
