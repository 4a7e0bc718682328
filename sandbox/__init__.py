"""Isolation for every command the agent runs (bubblewrap + overlay staging). Not built yet."""
