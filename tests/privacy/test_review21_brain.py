"""Adversarial review of #21 (the brain's HTTP entry points the acceptance sweep does not plant through): each
free-text field a captain sends is searched for in every file under the brain's state directory."""

from __future__ import annotations

import httpx
import pytest

from tests.brain.helpers import LiveBrain

from .plant import leaks, plant

pytestmark = pytest.mark.anyio


async def test_a_kill_and_a_resume_reason_are_kept_protected(live: LiveBrain) -> None:
    """Withstood: the reasons of a kill and a resume (`service.kill`) are protected before they are kept."""
    p = plant()
    captain = {"Authorization": f"Bearer {live.tokens['captain']}"}
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        for path, body in [
            ("/v1/kill", {"reason": f"leak to {p.email}"}),
            ("/v1/resume", {"reason": f"fixed, told {p.phone}"}),
        ]:
            sent = await http.post(path, json=body, headers=captain)
            assert sent.status_code < 300, (path, sent.text)
    assert leaks([live.db.parent], p.values()) == []


async def test_a_readiness_override_reason_is_kept_protected(live: LiveBrain) -> None:
    """Was a hole (medium): `POST /v1/readiness/overrides` kept `reason` as sent (`service.override_readiness`
    protected neither it nor the captain log entry written with it), so personal data typed there was in the
    brain's database, its WAL and every backup in clear, and `swarm privacy erase` could not reach it; `POST
    /v1/bodies/{id}/rebind`'s reason (`auth.rebind_body`) passed through the same way. Fixed by protecting
    `request.reason` at the top of `override_readiness` and `rebind`, as `kill` does (replies are revealed)."""
    p = plant()
    captain = {"Authorization": f"Bearer {live.tokens['captain']}"}
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        sent = await http.post(
            "/v1/readiness/overrides",
            json={"agent": "worker-1", "logic_version": "v1", "reason": f"approved on the phone by {p.email}"},
            headers=captain,
        )
        assert sent.status_code == 201, sent.text
        assert p.email in sent.json()["reason"]  # served back revealed to the captain
    assert leaks([live.db.parent], p.values()) == []


async def test_a_readiness_reports_details_are_kept_protected(live: LiveBrain) -> None:
    """Was a hole (medium): `POST /v1/readiness` (what `swarm readiness` sends) kept each item's `detail` and
    `fix` as sent; the checks quote configuration (a wake-up recipient's phone, an SMTP login's address), so
    personal data was in the brain's database in clear, beyond erasure. Fixed by protecting the items' text in
    `service.record_readiness` (replies are revealed)."""
    p = plant()
    captain = {"Authorization": f"Bearer {live.tokens['captain']}"}
    item = {"name": "wake_channels", "ok": False, "detail": f"sms to {p.phone} failed", "fix": f"ask {p.email}"}
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        sent = await http.post("/v1/readiness", json={"ready": False, "items": [item]}, headers=captain)
        assert sent.status_code < 300, sent.text
        assert sent.json()["report"]["items"][0]["fix"] == f"ask {p.email}"  # served back revealed
    assert leaks([live.db.parent], p.values()) == []
