"""Dashboard login, sessions and CSRF over HTTP, on every state engine: who may log in, the cookie, the CSRF header
and Origin every state-changing request needs, and how a session ends (logout, timeouts, its token revoked)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from brain_server import Brain, build_app, issue_token, revoke_token
from shared_protocol.brain import Role
from tests.brain.helpers import Clock, decision_request, ok, refused

pytestmark = pytest.mark.anyio

ORIGIN = "http://brain"
CSP = (
    "default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


@pytest.fixture
async def web(brain: Brain) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client of the brain (it keeps cookies), in memory, served as http://brain."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(brain)), base_url=ORIGIN) as client:
        yield client


async def token(brain: Brain, role: Role, label: str | None = None) -> str:
    return await issue_token(brain.state, role=role, label=label or f"{role}-web", at=brain.now())


async def login(web: httpx.AsyncClient, secret: str) -> dict[str, Any]:
    return ok(await web.post("/session", json={"token": secret}, headers={"Origin": ORIGIN}), 201)


def changes(session: dict[str, Any], **headers: str) -> dict[str, str]:
    """The headers of the dashboard's state-changing request: its own Origin and the session's CSRF token."""
    return {"Origin": ORIGIN, session["csrf_header"]: session["csrf"], **headers}


async def test_the_page_and_its_files_are_served_with_a_strict_policy(web: httpx.AsyncClient) -> None:
    page = await web.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script src="/dashboard/app.js" defer></script>' in page.text and "<script>" not in page.text
    script = await web.get("/dashboard/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert script.headers["content-security-policy"] == CSP
    assert ".innerHTML" not in script.text and "insertAdjacentHTML" not in script.text
    assert (await web.get("/dashboard/style.css")).headers["content-type"].startswith("text/css")
    refused(await web.get("/dashboard/../auth.py"), 404, "not_found")
    refused(await web.get("/dashboard/index.html"), 404, "not_found")


async def test_only_an_approver_or_captain_token_logs_in(brain: Brain, web: httpx.AsyncClient) -> None:
    body = await token(brain, "body")
    answer = refused(await web.post("/session", json={"token": body}, headers={"Origin": ORIGIN}), 403, "forbidden")
    assert "body token cannot log in" in answer["message"]
    answer = refused(
        await web.post("/session", json={"token": "swb_nope"}, headers={"Origin": ORIGIN}), 401, "unauthorized"
    )
    assert "unknown token" in answer["message"]
    revoked = await token(brain, "approver", "gone")
    record = next(t for t in await brain.state.tokens() if t.label == "gone")
    await revoke_token(brain.state, record.id, reason="left", at=brain.now())
    refused(await web.post("/session", json={"token": revoked}, headers={"Origin": ORIGIN}), 401, "unauthorized")
    bad = refused(await web.post("/session", content=b"{not json", headers={"Origin": ORIGIN}), 422, "invalid_request")
    assert bad["field"] == "token"
    refused(await web.post("/session", json={}, headers={"Origin": ORIGIN}), 422, "invalid_request")
    # A login from another site's page (or with no Origin) is refused: no login CSRF.
    approver = await token(brain, "approver")
    other = refused(
        await web.post("/session", json={"token": approver}, headers={"Origin": "https://evil.example"}),
        403,
        "forbidden",
    )
    assert other["field"] == "Origin"
    refused(await web.post("/session", json={"token": approver}), 403, "forbidden")
    assert not web.cookies
    refused(await web.get("/session"), 401, "unauthorized")

    session = await login(web, approver)
    assert (session["role"], session["label"]) == ("approver", "approver-web") and session["csrf"]
    assert ok(await web.get("/session"))["csrf"] == session["csrf"]


async def test_the_cookie_is_httponly_strict_and_secure_only_over_https(brain: Brain, web: httpx.AsyncClient) -> None:
    response = await web.post("/session", json={"token": await token(brain, "captain")}, headers={"Origin": ORIGIN})
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("swarm_session=sws_")
    for part in ("HttpOnly", "SameSite=strict", "Path=/", f"Max-Age={brain.settings.session_max_s}"):
        assert part.lower() in cookie.lower(), cookie
    assert "secure" not in cookie.lower()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(brain)), base_url="https://brain") as tls:
        response = await tls.post(
            "/session", json={"token": await token(brain, "captain")}, headers={"Origin": "https://brain"}
        )
        assert "; secure" in response.headers["set-cookie"].lower()
    # The secret is never stored: only its hash.
    secret = response.cookies["swarm_session"]
    log = await brain.state.log_entries(limit=5)
    assert [e.action for e in log if e.action == "session_start"] and all(secret not in str(e) for e in log)


async def test_a_state_changing_request_needs_the_csrf_header_and_the_dashboards_origin(
    brain: Brain, web: httpx.AsyncClient
) -> None:
    session = await login(web, await token(brain, "captain"))
    assert ok(await web.get("/v1/status"))["kill"]["engaged"] is False  # a read needs no CSRF token
    cases: list[tuple[dict[str, str], str]] = [
        ({"Origin": ORIGIN}, "X-Swarm-CSRF"),
        ({"Origin": ORIGIN, "X-Swarm-CSRF": "forged"}, "X-Swarm-CSRF"),
        ({session["csrf_header"]: session["csrf"]}, "Origin"),
        (changes(session, Origin="https://evil.example"), "Origin"),
        (changes(session, Origin="null"), "Origin"),
    ]
    for headers, field in cases:
        answer = refused(await web.post("/v1/kill", json={"reason": "r"}, headers=headers), 403, "forbidden")
        assert answer["field"] == field, answer
    assert (await brain.kill_state()).engaged is False
    assert ok(await web.post("/v1/kill", json={"reason": "from the page"}, headers=changes(session)))["engaged"]
    killed = await brain.kill_state()
    assert (killed.engaged, killed.by, killed.reason) == (True, "captain-web", "from the page")
    assert not ok(await web.post("/v1/resume", json={"reason": "ok"}, headers=changes(session)))["engaged"]


async def test_a_session_has_its_tokens_role_and_never_a_bodys_routes(brain: Brain, web: httpx.AsyncClient) -> None:
    session = await login(web, await token(brain, "approver"))
    refused(await web.post("/v1/kill", json={"reason": "r"}, headers=changes(session)), 403, "forbidden")
    claim = {"body_id": "b", "agent": "claude"}
    refused(await web.post("/v1/tasks/claim", json=claim, headers=changes(session)), 403, "forbidden")
    refused(await web.post("/v1/decisions", json=decision_request(), headers=changes(session)), 403, "forbidden")
    assert (
        ok(await web.post("/v1/tasks", json={"title": "t"}, headers=changes(session)), 201)["created_by"]
        == "approver-web"
    )


async def test_a_session_ends_when_its_token_is_revoked(brain: Brain, web: httpx.AsyncClient) -> None:
    session = await login(web, await token(brain, "captain", "leaving"))
    assert ok(await web.get("/v1/status"))
    record = next(t for t in await brain.state.tokens() if t.label == "leaving")
    await revoke_token(brain.state, record.id, reason="left the team", at=brain.now())
    for response in (
        await web.get("/v1/status"),
        await web.get("/session"),
        await web.post("/v1/kill", json={"reason": "r"}, headers=changes(session)),
    ):
        assert "was revoked" in refused(response, 401, "unauthorized")["message"]
    assert (await brain.kill_state()).engaged is False


async def test_a_session_ends_after_its_idle_and_absolute_timeouts(
    brain: Brain, web: httpx.AsyncClient, clock: Clock
) -> None:
    idle, most = brain.settings.session_idle_s, brain.settings.session_max_s
    await login(web, await token(brain, "approver"))
    clock.advance(idle - 10)
    assert ok(await web.get("/v1/status"))  # used: the idle time starts again
    clock.advance(idle - 10)
    assert ok(await web.get("/v1/status"))
    clock.advance(idle)
    assert "idle" in refused(await web.get("/v1/status"), 401, "unauthorized")["message"]
    assert "has ended" in refused(await web.get("/v1/status"), 401, "unauthorized")["message"]  # gone for good
    assert [e.reason for e in await brain.state.log_entries(limit=5) if e.action == "session_end"]

    await login(web, await token(brain, "approver"))
    for _ in range(most // (idle // 2) + 1):
        clock.advance(idle // 2)
        response = await web.get("/v1/status")
        if response.status_code != 200:
            break
    assert "at most" in refused(response, 401, "unauthorized")["message"]


async def test_logout_ends_the_session_and_needs_csrf(brain: Brain, web: httpx.AsyncClient) -> None:
    session = await login(web, await token(brain, "approver"))
    refused(await web.delete("/session", headers={"Origin": ORIGIN}), 403, "forbidden")
    response = await web.delete("/session", headers=changes(session))
    assert response.status_code == 204
    assert "swarm_session=" in response.headers["set-cookie"] and "max-age=0" in response.headers["set-cookie"].lower()
    refused(await web.get("/v1/status"), 401, "unauthorized")


async def test_a_bearer_token_still_works_and_wins_over_a_cookie(brain: Brain, web: httpx.AsyncClient) -> None:
    await login(web, await token(brain, "approver"))
    captain = await token(brain, "captain")
    # With a bearer token no CSRF check applies (no browser sends one by itself) and the token's role counts.
    answer = ok(await web.post("/v1/kill", json={"reason": "cli"}, headers={"Authorization": f"Bearer {captain}"}))
    assert answer["by"] == "captain-web"


async def test_pending_decisions_are_listed_with_what_they_are_about(brain: Brain, web: httpx.AsyncClient) -> None:
    body = await token(brain, "body")
    bearer = {"Authorization": f"Bearer {body}"}
    pending = ok(await web.post("/v1/decisions", json=decision_request(confidence=0.2), headers=bearer), 201)
    ok(await web.post("/v1/decisions", json=decision_request(summary="small", confidence=0.9), headers=bearer), 201)
    session = await login(web, await token(brain, "approver"))
    listed = ok(await web.get("/v1/decisions?state=pending"))
    assert [(d["id"], d["summary"], d["options"]) for d in listed] == [
        (pending["id"], "rewrite the billing module", ["rewrite", "patch"])
    ]
    assert len(ok(await web.get("/v1/decisions"))) == 2
    assert (
        "state must be one of" in refused(await web.get("/v1/decisions?state=maybe"), 422, "invalid_request")["message"]
    )
    # A body's token sees the decisions its own body asked for, and nothing of another body's (governance's inbox).
    assert [d["id"] for d in ok(await web.get("/v1/decisions?state=pending", headers=bearer))] == [pending["id"]]
    ok(await web.post(f"/v1/decisions/{pending['id']}/approve", json={"reason": "go"}, headers=changes(session)))
    assert ok(await web.get("/v1/decisions?state=pending")) == []


def test_the_session_keys_of_the_brain_section_are_checked(tmp_path: Path, home: Path) -> None:
    from brain_server.exceptions import ConfigError
    from shared_protocol.config import parse_config
    from swarm_cli.brain_cmds import load_settings

    config = tmp_path / "swarm.toml"
    config.write_text('[brain]\nsession_idle_s = 60\nsession_max_s = 600\nsession_cookie_secure = "always"\n')
    settings = load_settings(config=str(config))
    assert (settings.session_idle_s, settings.session_max_s, settings.session_cookie_secure) == (60, 600, "always")
    assert parse_config({"brain": {"session_idle_s": 60}}).brain.session_idle_s == 60
    for bad, key in (
        ("session_idle_s = 0", "session_idle_s"),
        ("session_max_s = -5", "session_max_s"),
        ('session_cookie_secure = "sometimes"', "session_cookie_secure"),
    ):
        config.write_text(f"[brain]\n{bad}\n")
        with pytest.raises(ConfigError, match=rf"'brain\.{key}'"):
            load_settings(config=str(config))


async def test_a_login_deletes_the_sessions_whose_timeouts_passed(
    brain: Brain, web: httpx.AsyncClient, clock: Clock
) -> None:
    from brain_server.auth import hash_token

    await login(web, await token(brain, "approver"))
    abandoned = hash_token(web.cookies["swarm_session"])
    clock.advance(brain.settings.session_idle_s - 1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(brain)), base_url=ORIGIN) as other:
        await login(other, await token(brain, "approver", "other"))
        assert await brain.state.session_by_hash(abandoned) is not None  # not idle long enough yet
        clock.advance(2)
        await login(other, await token(brain, "approver", "third"))
        assert await brain.state.session_by_hash(abandoned) is None
        assert await brain.state.session_by_hash(hash_token(other.cookies["swarm_session"])) is not None
