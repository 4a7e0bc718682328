"""The `swarm` command line: wires the body, the brain and the sandbox together; holds no logic of its own."""

from .main import main

__all__ = ["main"]
