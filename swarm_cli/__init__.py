"""The `swarm` command line: wires the body, the brain and the sandbox together; holds no logic of its own."""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .main import main

__all__ = ["main"]


def __getattr__(name: str) -> object:
    # `swarm hook` (on every IDE tool call) starts without importing the CLI: `entry` decides what to load.
    if name == "main":
        from .main import main

        return main
    raise AttributeError(f"module 'swarm_cli' has no attribute {name!r}")
