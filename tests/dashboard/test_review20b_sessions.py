"""Adversarial review of #20's dashboard sessions over real HTTP on 127.0.0.1 and a real SQLite file: login CSRF,
session fixation, who may log in, CSRF and Origin on every state-changing request (missing, `null`, another port,
a simple content type), a GET that would change state, the per-agent pause through a session, a revoked token's
session, the cookie's flags, the policy headers, and the page's script read for every HTML sink.

All of these are attacks the code withstood (plain tests); the holes found are in test_review20b_browser.py and
tests/brain/test_review19_governance.py."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from brain_server import SqliteStateEngine, revoke_token
from brain_server.dashboard.pages import STATIC
from tests.body.test_brain_link import brain_on
from tests.brain.helpers import issue_in, ok, refused

pytestmark = pytest.mark.anyio


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Site:
    def __init__(self, url: str, db: Path, client: httpx.AsyncClient) -> None:
        self.url = url
        self.db = db
        self.client = client


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    db, port = tmp_path / "brain.db", _free_port()
    url = f"http://127.0.0.1:{port}"
    async with brain_on(port, db), httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield Site(url, db, client)


async def _login(site: Site, token: str) -> dict[str, Any]:
    return ok(await site.client.post("/session", json={"token": token}, headers={"Origin": site.url}), 201)


async def _kill_engaged(site: Site, captain: str) -> bool:
    async with httpx.AsyncClient(base_url=site.url) as plain:  # (a bearer token, no cookie)
        status = await plain.get("/v1/status", headers={"Authorization": f"Bearer {captain}"})
    return bool(ok(status)["kill"]["engaged"])


async def test_login_needs_the_dashboards_own_origin(site: Site) -> None:
    captain = await issue_in(site.db, "captain", "cap-1")
    other_port = f"http://127.0.0.1:{_free_port()}"
    for origin in (None, "null", "http://evil.example", other_port, site.url.replace("127.0.0.1", "localhost")):
        headers = {} if origin is None else {"Origin": origin}
        answer = await site.client.post("/session", json={"token": captain}, headers=headers)
        refused(answer, 403, "forbidden")
        assert "set-cookie" not in answer.headers
    assert site.client.cookies.get("swarm_session") is None


async def test_agent_and_scraper_tokens_cannot_log_in(site: Site) -> None:
    for role, agent in (("body", None), ("body", "w1"), ("reviewer", "rev-a"), ("metrics", None)):
        secret = await issue_in(site.db, role, f"{role}-{agent}", agent)  # type: ignore[arg-type]
        answer = await site.client.post("/session", json={"token": secret}, headers={"Origin": site.url})
        refused(answer, 403, "forbidden")
        assert "set-cookie" not in answer.headers


async def test_a_planted_session_cookie_is_never_adopted(site: Site) -> None:
    """Session fixation: a cookie value set before login is replaced by a fresh one, and means nothing."""
    captain = await issue_in(site.db, "captain", "cap-1")
    planted = "sws_attacker-chosen-value"
    answer = await site.client.post(
        "/session",
        json={"token": captain},
        headers={"Origin": site.url, "Cookie": f"swarm_session={planted}"},
    )
    ok(answer, 201)
    fresh = re.match(r"swarm_session=([^;]+);", answer.headers["set-cookie"])
    assert fresh is not None and fresh.group(1) != planted
    async with httpx.AsyncClient(base_url=site.url, cookies={"swarm_session": planted}) as attacker:
        refused(await attacker.get("/session"), 401, "unauthorized")


async def test_a_state_change_through_a_session_needs_its_csrf_header_and_own_origin(site: Site) -> None:
    captain = await issue_in(site.db, "captain", "cap-1")
    session = await _login(site, captain)
    csrf = {session["csrf_header"]: session["csrf"]}
    attempts: list[tuple[dict[str, str], Any]] = [
        ({"Origin": site.url}, {"json": {"reason": "no csrf"}}),
        (csrf, {"json": {"reason": "no origin"}}),
        ({**csrf, "Origin": "null"}, {"json": {"reason": "null origin"}}),
        ({**csrf, "Origin": f"http://127.0.0.1:{_free_port()}"}, {"json": {"reason": "another port"}}),
        ({session["csrf_header"]: "wrong", "Origin": site.url}, {"json": {"reason": "wrong csrf"}}),
        ({"Origin": site.url, "Content-Type": "text/plain"}, {"content": b'{"reason": "a form post"}'}),
        (
            {"Origin": site.url, "Content-Type": "application/x-www-form-urlencoded"},
            {"content": b"reason=form"},
        ),
    ]
    for headers, body in attempts:
        refused(await site.client.post("/v1/kill", headers=headers, **body), 403, "forbidden")
    # A GET never changes state: the route takes POST only.
    assert (await site.client.get("/v1/kill")).status_code == 405
    assert not await _kill_engaged(site, captain)
    ok(await site.client.post("/v1/kill", json={"reason": "real"}, headers={**csrf, "Origin": site.url}))
    assert await _kill_engaged(site, captain)


async def test_the_per_agent_pause_through_a_session_is_a_captains_with_csrf(site: Site) -> None:
    await issue_in(site.db, "body", "w1-body", "w1")
    approver = await issue_in(site.db, "approver", "appr-1")
    captain = await issue_in(site.db, "captain", "cap-1")
    session = await _login(site, approver)
    headers = {session["csrf_header"]: session["csrf"], "Origin": site.url}
    refused(await site.client.post("/v1/agents/w1/pause", json={"reason": "x"}, headers=headers), 403, "forbidden")
    site.client.cookies.clear()
    session = await _login(site, captain)
    headers = {session["csrf_header"]: session["csrf"], "Origin": site.url}
    refused(
        await site.client.post("/v1/agents/w1/pause", json={"reason": "x"}, headers={"Origin": site.url}),
        403,
        "forbidden",
    )
    ok(await site.client.post("/v1/agents/w1/pause", json={"reason": "x"}, headers=headers), 201)
    refused(
        await site.client.post("/v1/agents/w1/resume", json={"reason": "y"}, headers={"Origin": site.url}),
        403,
        "forbidden",
    )
    ok(await site.client.post("/v1/agents/w1/resume", json={"reason": "y"}, headers=headers))


async def test_a_revoked_tokens_session_and_its_stream_end(site: Site) -> None:
    captain = await issue_in(site.db, "captain", "cap-1")
    await _login(site, captain)
    ok(await site.client.get("/session"))
    state = await SqliteStateEngine.open(site.db)
    try:
        record = next(t for t in await state.tokens() if t.label == "cap-1")
        await revoke_token(state, record.id, reason="left", at=datetime.now(UTC))
    finally:
        await state.close()
    refused(await site.client.get("/session"), 401, "unauthorized")
    refused(await site.client.get("/v1/status"), 401, "unauthorized")
    refused(await site.client.get("/v1/dashboard/stream"), 401, "unauthorized")


async def test_the_cookie_is_out_of_scripts_reach_and_the_page_cannot_be_framed(site: Site) -> None:
    captain = await issue_in(site.db, "captain", "cap-1")
    answer = await site.client.post("/session", json={"token": captain}, headers={"Origin": site.url})
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert "csrf" not in cookie  # the CSRF token is in the JSON only, never in a cookie a form post would carry
    for path in ("/", "/dashboard/app.js", "/dashboard/style.css", "/session"):
        headers = (await site.client.get(path)).headers
        csp = headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "data:" not in csp
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp and "script-src 'self'" in csp
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert "access-control-allow-origin" not in (await site.client.get("/session")).headers


SINKS = [
    r"\.innerHTML",
    r"\.outerHTML",
    r"insertAdjacentHTML",
    r"document\.write",
    r"\beval\(",
    r"new Function",
    r"setTimeout\(\s*[\"'`]",
    r"setInterval\(\s*[\"'`]",
    r"\.href\s*=",
    r"\.src\s*=",
    r"\.action\s*=",
    r"setAttribute\(",
    r"\.style\b",
    r"\.cssText",
    r"location\s*=",
    r"createContextualFragment",
    r"DOMParser",
    r"\.srcdoc",
]


def test_the_pages_script_writes_data_as_text_only() -> None:
    """Every DOM write in app.js goes through textContent / createTextNode / className / dataset / hidden: no HTML
    parsing sink, no URL built from data (a `javascript:` link), no inline style (CSS injection)."""
    script = re.sub(r"^\s*//.*$", "", (STATIC / "app.js").read_text(), flags=re.MULTILINE)  # (comments name sinks)
    found = [sink for sink in SINKS if re.search(sink, script)]
    assert found == []
    # className is only ever set from a constant, or from `outcome`, which the brain's schema limits to four words.
    classes = re.findall(r"className\s*=\s*([^;]+);", script) + re.findall(r'el\("[a-z]+",\s*([^,)]+)', script)
    dynamic = [c.strip() for c in classes if not re.fullmatch(r'\s*(null|className|"[a-z -]*")\s*', c)]
    assert dynamic == ['"audit-item " + e.outcome'], dynamic
    page = (STATIC / "index.html").read_text()
    assert re.search(r"<script(?![^>]*\bsrc=)", page) is None
    assert re.search(r"\sstyle=|\son[a-z]+=|javascript:|<style", page, flags=re.IGNORECASE) is None


def test_an_audit_events_outcome_cannot_carry_a_class_list() -> None:
    from pydantic import ValidationError

    from shared_protocol import AuditEvent

    with pytest.raises(ValidationError):
        AuditEvent.model_validate(
            {
                "seq": 1,
                "id": "act_1",
                "ts": "2030-01-01T00:00:00+00:00",
                "kind": "tool_call",
                "body_id": "b",
                "agent": "a",
                "session": "s",
                "rationale": "r",
                "outcome": "ok hidden",
                "prev_mac": "genesis",
                "mac": "m",
            }
        )
