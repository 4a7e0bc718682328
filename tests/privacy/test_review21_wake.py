"""Adversarial review of #21 (the wake-up ladder): what a page carries to a human, and what an acknowledgement
keeps, with a real Brain over a real SQLite file and recording channels (tests/wake/test_escalation.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.wake.test_escalation import BODY, HUMAN, Ladder, ladder, needs_human

from .plant import encodings, leaks, plant

__all__ = ["ladder"]  # (the fixture)

pytestmark = pytest.mark.anyio


async def test_a_page_carries_no_personal_data(ladder: Ladder) -> None:
    """Withstood: a decision whose summary, rationale, options and action hold personal data pages every level
    (Discord, SMS, call) with it redacted (`Escalator(redact=...)`), in no encoding."""
    p = plant()
    request = needs_human().model_copy(
        update={
            "summary": f"mail {p.email} the refund",
            "rationale": p.text(),
            "options": [f"call {p.phone}"],
            "action": f"charge {p.card}",
        }
    )
    await ladder.brain.request_decision(BODY, request)
    for at in (0, 600, 1200, 1800, 2400, 3000):
        await ladder.at(at)
    pages = [page for channel in ladder.channels.values() for page in channel.pages]
    assert pages
    shown = "\n".join(repr(page) for page in pages).encode()
    assert [v for v in p.values() for form in encodings(v) if form in shown] == []


async def test_an_acknowledgement_reason_is_kept_protected(ladder: Ladder, tmp_path: Path) -> None:
    """Was a hole (medium): `POST /v1/escalations/{id}/acknowledge`'s reason went into the escalation's
    `closed_reason` and the brain's log as typed (`service.acknowledge` did not protect it), in clear in the
    database and its WAL, beyond `swarm privacy erase`. Fixed by protecting the reason in `service.acknowledge`."""
    p = plant()
    decision = await ladder.brain.request_decision(BODY, needs_human())
    await ladder.at(0)
    acked = await ladder.brain.acknowledge(HUMAN, decision.id, f"calling {p.phone} now, cc {p.email}")
    assert acked.state == "acknowledged"
    assert leaks([tmp_path], p.values()) == []
