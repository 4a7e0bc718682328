"""Adversarial review 19b: lone writes (journaled and synced on the event loop) mixed with writes in flight
together (the writer thread's, one shared sync) and reads (lazy, on the loop), then a power loss before any settle:
every acknowledged write must come back from the journal, in the order the chain gave them, and verify.

Run: python3 -m uv run --frozen pytest -n 0 tests/review19b/test_mixed_paths_power_loss.py
"""

from __future__ import annotations

import asyncio
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from body_mcp import Body
from tests.body.audit_disk import NO_WINDOW, Disk, committed, unsettled_body
from tests.conftest import make_body

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _write(body: Body, name: str) -> str:
    out = await body.call_tool("write_file", {"path": name, "content": f"{name}\n", "rationale": "r"})
    assert not out.is_error, out.structured
    return out.action_id


async def test_lone_and_concurrent_writes_before_a_power_loss_all_come_back_in_chain_order(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held: the database back to its last sync (none since the first settle), the journal as written; a new body
    replays every acknowledged write, each once, and verify passes."""
    body = unsettled_body(workspace, home, monkeypatch, NO_WINDOW)
    acknowledged: list[str] = []
    paths = {"loop": 0, "thread": 0}
    store = body.audit
    real_now, real_append = store.try_append_now, store.append

    def try_append_now(*args: Any, **kwargs: Any) -> Any:
        done = real_now(*args, **kwargs)
        paths["loop"] += done is not None
        return done

    def append(*args: Any, **kwargs: Any) -> Any:
        paths["thread"] += 1
        return real_append(*args, **kwargs)

    monkeypatch.setattr(store, "try_append_now", try_append_now)
    monkeypatch.setattr(store, "append", append)
    with Disk(body, monkeypatch):
        acknowledged.append(await _write(body, "first.txt"))
        body.replies.run()
        await body.audit_writer.settled()
        body.audit.settle()
        for round_ in range(3):
            acknowledged.append(await _write(body, f"lone{round_}.txt"))
            body.replies.run()
            together = await asyncio.gather(*(_write(body, f"t{round_}-{i}.txt") for i in range(4)))
            acknowledged += together
            body.replies.run()
            read = await body.call_tool("read_text_file", {"path": "first.txt", "rationale": "r"})
            assert not read.is_error
            acknowledged.append(await _write(body, f"lone{round_}b.txt"))
            # (no settle: the commits owed or unsynced, the journal holding every record)
    assert paths["loop"] >= 6 and paths["thread"] >= 1, paths  # (both paths taken)
    with closing(make_body(workspace, home, NO_WINDOW)) as after:
        report = after.audit.verify()
        assert report.ok, report.summary()
    ids = committed(body.paths.db)
    missing = [action for action in acknowledged if action not in ids]
    assert not missing, f"acknowledged writes lost: {missing}"
    assert len(set(ids)) == len(ids)
