"""The dashboard's fixtures: the brain fixtures (a brain on every state engine, a controllable clock)."""

from tests.brain.conftest import anyio_backend, brain, clock, pages, settings, state

__all__ = ["anyio_backend", "brain", "clock", "pages", "settings", "state"]
