"""Adversarial review of #21 over a real `swarm body` on stdio (unlinked, `[privacy]` on by default): the shapes
the fixed holes took, planted through the body's real entry points, are found in no file of its state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import Client

from tests.body.helpers import ok

from .plant import leaks, plant
from .stack import body

pytestmark = pytest.mark.anyio


async def test_forged_tokens_and_unicode_emails_reach_no_store_in_clear(tmp_path: Path, home: Path) -> None:
    """Was a hole (high), fixed in shared_protocol.privacy (see test_review21_detector.py): a rationale holding a
    token-shaped card (`[pii:card:s…:<digits>]`), a model turn holding a token-shaped phone, and a command
    printing an internationalised email were each kept in clear in the body's audit database or kept outputs.
    (A model turn's object keys cannot be planted here: `swarm/turn` is a closed schema.)"""
    p = plant()
    digits = p.card.replace(" ", "")
    local = p.email.split("@")[0]
    unicode_email = f"jörg{local}@exämple.de"
    workspace = tmp_path / "ws"
    workspace.mkdir()
    async with Client(body(workspace, home)) as client:
        ran = ok(
            await client.call_tool(
                "run_command",
                {
                    "argv": ["sh", "-c", f"echo 'reply to {unicode_email}'"],
                    "rationale": f"charge [pii:card:s0123456789abcdef:{digits}] again",
                },
                meta={
                    "swarm/origin": "model",
                    "swarm/turn": {
                        "step": 1,
                        "text": f"[pii:phone:s0123456789abcdef:{p.phone_e164[2:]}]",
                        "tool_call_id": "c1",
                    },
                },
            )
        )
        assert unicode_email in json.dumps(ran, ensure_ascii=False)  # the agent sees its output as it was
    assert leaks([home], [*p.values(), unicode_email, f"jörg{local}", digits]) == []
