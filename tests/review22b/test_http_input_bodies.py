"""Review 22b: bad request bodies at every POST route of a live brain (uvicorn on 127.0.0.1, a SQLite file).

Each is refused with the brain's error shape (`{code, message}`, 4xx, no traceback), never a 500 or a 2xx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from brain_server import BrainSettings
from brain_server.state import sqlite_url

from ..brain.helpers import live_brain

pytestmark = pytest.mark.anyio

POST_ROUTES = [
    ("/v1/kill", "captain"),
    ("/v1/resume", "captain"),
    ("/v1/agents/w1/pause", "captain"),
    ("/v1/agents/w1/resume", "captain"),
    ("/v1/agents/w1/rollout/promote", "captain"),
    ("/v1/agents/w1/rollout/rollback", "captain"),
    ("/v1/bodies/register", "body"),
    ("/v1/bodies/body-a/rebind", "captain"),
    ("/v1/audit", "body"),
    ("/v1/decisions", "body"),
    ("/v1/decisions/dec_x/approve", "approver"),
    ("/v1/decisions/dec_x/deny", "approver"),
    ("/v1/decisions/dec_x/override", "captain"),
    ("/v1/tasks", "approver"),
    ("/v1/tasks/claim", "body"),
    ("/v1/tasks/task_x/renew", "body"),
    ("/v1/tasks/task_x/park", "body"),
    ("/v1/tasks/task_x/resume", "body"),
    ("/v1/tasks/task_x/outcome", "body"),
    ("/v1/tasks/task_x/abandon", "body"),
    ("/v1/tasks/task_x/cancel", "approver"),
    ("/v1/usage", "body"),
    ("/v1/readiness", "captain"),
    ("/v1/readiness/overrides", "captain"),
    ("/v1/escalations/dec_x/acknowledge", "approver"),
    ("/v1/undo/act_x", "captain"),
    ("/v1/privacy/erase", "captain"),
    ("/v1/privacy/unerase", "captain"),
    ("/v1/privacy/export", "captain"),
    ("/v1/privacy/migrate", "captain"),
]
"""Every POST route that takes a JSON body (heartbeat and deregister take none and read none)."""

BAD_BODIES = [b"not json", b"[]", b'"text"', b"null", b"1", b"\xff\xfe", b'{"reason": NaN}', b'{"zz_unknown": 1}']


async def test_every_post_route_refuses_a_body_that_is_not_a_json_object_of_its_fields(tmp_path: Path) -> None:
    wrong: list[tuple[str, bytes, int, str]] = []
    settings = BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"))
    async with live_brain(settings) as brain, httpx.AsyncClient(base_url=brain.url, timeout=10) as http:
        before = (await http.get("/v1/status", headers={"Authorization": f"Bearer {brain.tokens['captain']}"})).json()
        for path, role in POST_ROUTES:
            headers = {"Authorization": f"Bearer {brain.tokens[role]}", "Content-Type": "application/json"}
            for body in BAD_BODIES:
                response = await http.post(path, content=body, headers=headers)
                error: dict[str, Any] = (
                    response.json() if response.headers.get("content-type") == "application/json" else {}
                )
                if not (400 <= response.status_code < 500 and error.get("code")) or "Traceback" in response.text:
                    wrong.append((path, body, response.status_code, response.text[:200]))
        after = (await http.get("/v1/status", headers={"Authorization": f"Bearer {brain.tokens['captain']}"})).json()
    assert wrong == []
    assert after == before


async def test_privacy_migrate_refuses_a_body_with_fields_or_not_json_and_takes_an_empty_one(tmp_path: Path) -> None:
    """Was a hole (low), fixed. Reproduce: `POST /v1/privacy/migrate` with the body `not json`, `[]` or
    `{"dry_run": true}`: 200, and the migration ran (it rewrites stored events and deletes old backups), where every
    other route refuses such a body (422). Fix: the handler parses its body as a model of no fields (`parse`)."""
    settings = BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"))
    async with live_brain(settings) as brain, httpx.AsyncClient(base_url=brain.url, timeout=10) as http:
        headers = {"Authorization": f"Bearer {brain.tokens['captain']}", "Content-Type": "application/json"}
        junk = await http.post("/v1/privacy/migrate", content=b"not json", headers=headers)
        assert (junk.status_code, junk.json()["code"]) == (422, "invalid_json")
        array = await http.post("/v1/privacy/migrate", content=b"[]", headers=headers)
        assert (array.status_code, array.json()["code"]) == (422, "invalid_request")
        field = await http.post("/v1/privacy/migrate", content=b'{"dry_run": true}', headers=headers)
        assert (field.status_code, field.json()["field"]) == (422, "dry_run")
        for empty in (b"", b"{}"):
            assert (await http.post("/v1/privacy/migrate", content=empty, headers=headers)).status_code == 200
