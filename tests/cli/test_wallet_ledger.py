"""The wallet's ledger on the agent's limits file: model spend and the body's money limits are one window."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from agent_runner import (
    BudgetRefused,
    InMemoryProvider,
    ModelRequest,
    ModelTurn,
    PriceOverrides,
    TokenUsage,
    UserMessage,
    Wallet,
    estimate_reservation,
    resolve_pricing,
)
from body_mcp import build_server
from body_mcp.exceptions import RateLimited
from shared_protocol import Impact
from shared_protocol.config import parse_config
from swarm_cli._wallet import LimitsLedger

from ..body.helpers import call, ok
from ..conftest import make_body

pytestmark = pytest.mark.anyio

PRICING = resolve_pricing(
    "gpt-4o",
    provider="openai",
    overrides=PriceOverrides(input_usd_per_mtok=Decimal(2000), output_usd_per_mtok=Decimal(10000)),
)
# Dear prices so the windows fill in a few calls: 50 input tokens (see `request`) and 100 output tokens reserve
# (50 × 2000 + 100 × 10000) / 1e6 = $1.10; the answer below costs (50 × 2000 + 20 × 10000) / 1e6 = $0.30.
ANSWER = ModelTurn(content="ok", usage=TokenUsage(input_tokens=50, output_tokens=20))


def request() -> ModelRequest:
    """30 characters: 10 tokens at 3 a token, plus 20 framing tokens for the request and 20 for its message: 50."""
    return ModelRequest(system="S" * 10, messages=[UserMessage(content="U" * 20)], max_output_tokens=100)


def limits_config(**limits: Any) -> dict[str, Any]:
    return {"limits": {"breaker_breaches": 50, **limits}}


def wallet_on(ledger: LimitsLedger) -> Wallet:
    return Wallet(
        ledger, PRICING, provider="openai", agent="coder", logic_version="lv-x", max_usd_per_task=100, sink=None
    )


async def test_the_money_window_refuses_a_model_call_as_budget_refused_naming_the_limit(
    workspace: Path, home: Path
) -> None:
    assert estimate_reservation(request(), PRICING) == Decimal("1.1")
    body = make_body(workspace, home, limits_config(usd_per_hour=2))
    ledger = LimitsLedger(body.paths.limits, parse_config(limits_config(usd_per_hour=2)).limits)
    try:
        task = wallet_on(ledger).task("t-1")
        provider = InMemoryProvider([ANSWER] * 5)
        for _ in range(4):  # the fourth: $0.90 spent + $1.10 held = $2.00, which still fits
            await task.complete(provider, request())
        with pytest.raises(BudgetRefused) as refused:  # $1.20 + $1.10 > $2
            await task.complete(provider, request())
        assert refused.value.code == "limits.usd_per_hour"
        assert "[limits] usd_per_hour" in refused.value.reason
        assert "$1.20 of $2.00 spent in the last hour; this call needs $1.10" in refused.value.reason
        assert len(provider.requests) == 4 and task.spend().usd == Decimal("1.2")
    finally:
        ledger.close()
        body.close()


async def test_one_attempt_over_the_blast_radius_is_refused_naming_max_usd_per_action(
    workspace: Path, home: Path
) -> None:
    config = parse_config(limits_config(max_usd_per_action=1)).limits
    ledger = LimitsLedger(home / "agents" / "coder" / "limits-v4", config)  # its directory is made
    try:
        task = wallet_on(ledger).task("t-2")
        provider = InMemoryProvider([ANSWER])
        with pytest.raises(BudgetRefused) as refused:
            await task.complete(provider, request())
        assert refused.value.code == "limits.blast_radius"
        assert "[limits] max_usd_per_action" in refused.value.reason and "$1.10 (limit $1.00)" in refused.value.reason
        assert not provider.requests
    finally:
        ledger.close()


async def test_a_body_on_the_same_limits_file_sees_the_model_spend_and_refuses_money_past_the_window(
    workspace: Path, home: Path
) -> None:
    raw = limits_config(usd_per_hour=5, calls_per_minute=3)
    body = make_body(workspace, home, raw)
    ledger = LimitsLedger(body.paths.limits, parse_config(raw).limits)
    try:
        task = wallet_on(ledger).task("t-3")
        provider = InMemoryProvider([ANSWER] * 10)
        for _ in range(10):  # ten model calls: $3.00, and not one of the three tool calls a minute
            await task.complete(provider, request())
        async with Client(build_server(body)) as client:
            budgets = {b["name"]: b for b in ok(await call(client, "status"))["budgets"]}
        assert budgets["usd_per_hour"]["used"] == pytest.approx(3.0)
        assert budgets["calls_per_minute"]["used"] == 1  # the status call itself
        # The body's own money rules count the model spend: $2.50 more would pass $5 an hour.
        with pytest.raises(RateLimited, match=r"\$3.00 of \$5.00 spent in the last hour; this call needs \$2.50"):
            body.limits.reserve(Impact(usd=2.5), mutating=True)
        # And the other way: the body's money makes the next model call's reservation not fit.
        body.limits.settle(body.limits.reserve(Impact(usd=1), mutating=True), Impact(usd=1), failed=False)
        with pytest.raises(BudgetRefused, match="usd_per_hour"):
            await task.complete(provider, request())
    finally:
        ledger.close()
        body.close()
