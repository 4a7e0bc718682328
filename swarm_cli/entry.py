"""The `swarm` command's entry point: an IDE hook call goes to the warm hook server before anything heavy is
imported (see `_hook_client`); everything else, and a hook the server cannot answer, runs `main.main`."""

from __future__ import annotations

import gc
import sys

HOOK_IDES = ("claude-code", "cursor")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) >= 2 and args[0] == "hook" and args[1] in HOOK_IDES:
        from ._hook_client import run

        code = run(args)
        if code is not None:
            return code
    if not args or args[0] != "body" or not gc.isenabled():
        from .main import main as cli_main

        return cli_main(args)
    # `swarm body`: no garbage collection while it imports and builds what serving needs (some 110,000 objects,
    # nearly none of them garbage; the collector's passes over them cost 150-300 ms of a ~1.5 s start). Serving
    # collects once, freezes that heap and turns collection back on (`body_mcp.server._freeze_startup_heap`);
    # a body that fails before serving gets it back here.
    gc.disable()
    try:
        from .main import main as cli_main

        return cli_main(args)
    finally:
        gc.enable()
