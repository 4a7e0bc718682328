"""The genai-prices data this runner uses: the table bundled with the installed package, never fetched.

genai-prices can refresh its table from GitHub in a background thread (`UpdatePrices`); the runner never starts
that (no network, and a price must not change under a running wallet). Every lookup goes through the snapshot
below rather than the package's global one, so nothing else in the process can swap the table either. A new
table comes with a new genai-prices version in `uv.lock`.
"""

from __future__ import annotations

from functools import cache

from genai_prices.data_snapshot import DataSnapshot


@cache
def bundled_snapshot() -> DataSnapshot:
    from genai_prices.data import providers

    return DataSnapshot(providers=providers, from_auto_update=False)
