"""The `swarm` command's entry point: an IDE hook call goes to the warm hook server before anything heavy is
imported (see `_hook_client`); everything else, and a hook the server cannot answer, runs `main.main`."""

from __future__ import annotations

import sys

HOOK_IDES = ("claude-code", "cursor")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) >= 2 and args[0] == "hook" and args[1] in HOOK_IDES:
        from ._hook_client import run

        code = run(args)
        if code is not None:
            return code
    from .main import main as cli_main

    return cli_main(args)
