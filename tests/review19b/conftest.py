"""Review 19b's fixtures: the brain fixtures (a brain on every state engine, a controllable clock)."""

from tests.brain.conftest import brain, clock, pages, settings, state

__all__ = ["brain", "clock", "pages", "settings", "state"]
