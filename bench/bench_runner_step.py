"""Runner overhead per LLM step: the agent loop against the same work done bare, on a fake model that answers at once.

    uv run python bench/bench_runner_step.py [--rounds 9] [--steps 25]

Subject: `agent_runner.loop.work` with the real `OpenAIProvider` (the official SDK) against the fake OpenAI API of
tests/fakes on 127.0.0.1, each call reserved and settled by a real `Wallet` on a real limits file, and a real body
(`Body` + `build_server`, the official MCP client in memory: the real guard and audit chain). Every model turn is
one `read_text_file` call; a task is `--steps` turns (the step budget ends it).

Baseline, alternating task by task in the same run: the same work done bare. The same conversation, grown the same
way, sent with a direct `AsyncOpenAI(...).chat.completions.create` to the same fake (streamed, as the provider
asks), and the same tool call made with a direct MCP `call_tool` on the same body session. So both sides pay for
the fake, the HTTP round trip, the body's guard and audit; the difference is the runner (request building,
provider mapping, wallet, gate, loop).

A step is timed where both are seen the same way: between consecutive requests arriving at the fake (a model
answer, its tool call, and building the next request). Prints median and p90 per step for both, the overhead
(runner - bare) per round as min/median/max, and the ratio. Target (issue #17): overhead < 10 ms median.

Then tokens per task for the scripted tasks of tests/runner/stack.py (there are no scripted agent tasks
in `swarm demo`), their turns replayed by the fake through the same loop, counted by the fake's own tokenizer.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import anyio
from mcp import Client
from mcp_types import TextContent
from openai import AsyncOpenAI

from agent_runner import OpenAIProvider, RetryPolicy, Wallet, resolve_pricing
from agent_runner.body import BodySession, ToolReply
from agent_runner.conversation import ToolCall, ToolDefinition
from agent_runner.gate import KillGate
from agent_runner.loop import AgentProfile, Failed, Finished, TaskRun, first_message, work
from body_mcp import Body, BodySettings, build_server
from shared_protocol.config import LimitsConfig, parse_config
from shared_protocol.secrets import Secret
from swarm_cli._wallet import LimitsLedger
from tests.fakes.llm import Answer, FakeCall, Held, Turn
from tests.fakes.openai_api import API_KEY, FakeOpenAI
from tests.fakes.serve import serve_app
from tests.runner import stack as agent_run_tests

MODEL = "gpt-4o-mini"
SYSTEM = "You fix small bugs. Work only through your tools."
TARGET_MS = 10.0
READ = {"path": "app.py", "rationale": "see the code"}


class TimedOpenAI(FakeOpenAI):
    """The fake OpenAI API, noting when each request arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    def answer(self, headers: dict[str, str], body: Any) -> Answer | Held:
        self.arrivals.append(time.perf_counter())
        return super().answer(headers, body)


def profile(tools: tuple[str, ...], steps: int) -> AgentProfile:
    return AgentProfile(
        name="bench",
        logic_version="lv-bench",
        system_prompt=SYSTEM,
        tools=tools,
        max_steps=steps,
        max_usd_per_task=1000.0,
        max_output_tokens=256,
        task_timeout_s=600.0,
    )


async def no_approval(run: TaskRun, call: ToolCall, reply: ToolReply) -> str | None:
    return None


def new_run(workspace: Path, n: int) -> TaskRun:
    run = TaskRun(task_id=f"task_{n}", title="make main() return 2", workspace=workspace)
    run.messages.append(first_message("make main() return 2", "", agent_run_tests.ACCEPTANCE))
    return run


def _steps(arrivals: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(arrivals)]


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


async def main(rounds: int, steps: int) -> None:
    fake = TimedOpenAI()
    fake.default = Turn(content="Reading the code.", tool_calls=[FakeCall(name="read_text_file", arguments=READ)])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        workspace, home = root / "ws", root / "home"
        workspace.mkdir()
        home.mkdir()
        (workspace / "app.py").write_text("def main():\n    return 1\n")
        # The default 100 tool calls a minute would refuse a benchmark's pace: raised, nothing else changed.
        config = parse_config({"limits": {"calls_per_minute": 1_000_000}})
        body = Body(BodySettings(workspace=workspace, home=home, config=config))
        ledger = LimitsLedger(root / "agent" / "limits", LimitsConfig())
        wallet = Wallet(
            ledger,
            resolve_pricing(MODEL, provider="openai"),
            provider="openai",
            agent="bench",
            logic_version="lv-bench",
            max_usd_per_task=1000,
        )
        runner_steps: list[list[float]] = []
        sizes: dict[str, int] = {}
        """The last request of a task, in bytes, per side: both sides must send the same conversation."""
        bare_steps: list[list[float]] = []
        try:
            async with serve_app(fake) as url, Client(build_server(body)) as client:
                listed = await client.list_tools()
                tools = [
                    ToolDefinition.from_mcp(
                        {"name": t.name, "description": t.description, "inputSchema": t.input_schema}
                    )
                    for t in listed.tools
                ]
                session = BodySession(client, tools)
                retry = RetryPolicy(max_attempts=1, max_elapsed_s=30)
                provider = OpenAIProvider(
                    model=MODEL, api_key=Secret(API_KEY), base_url=f"{url}/v1", timeout_s=30, retry=retry
                )
                sdk = AsyncOpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=30)
                read_tool = next(t for t in tools if t.name == "read_text_file")
                wire_tools: list[dict[str, Any]] = [
                    {
                        "type": "function",
                        "function": {
                            "name": read_tool.name,
                            "description": read_tool.description,
                            "parameters": dict(read_tool.input_schema),
                        },
                    }
                ]

                async def runner_task(n: int) -> None:
                    run = new_run(workspace, n)
                    end = await work(
                        run,
                        profile=profile(("read_text_file",), steps),
                        provider=provider,
                        body=session,
                        spending=wallet.task(run.task_id),
                        gate=KillGate(),
                        ask_approval=no_approval,
                    )
                    assert isinstance(end, Failed) and "step budget" in end.reason, end
                    assert run.tool_calls == steps and run.refusals == 0, (run.tool_calls, run.refusals)

                async def bare_task(n: int) -> None:
                    first = first_message("make main() return 2", "", agent_run_tests.ACCEPTANCE)
                    messages: list[dict[str, Any]] = [
                        {"role": "system", "content": SYSTEM},
                        {"role": "user", "content": first.content},
                    ]
                    for _ in range(steps):
                        stream = await sdk.chat.completions.create(
                            model=MODEL,
                            messages=cast(Any, messages),
                            tools=cast(Any, wire_tools),
                            max_completion_tokens=256,
                            stream=True,  # as the runner's provider asks
                            stream_options={"include_usage": True},
                        )
                        content = ""
                        calls: dict[int, dict[str, str]] = {}
                        async for chunk in stream:
                            for choice in chunk.choices:
                                content += choice.delta.content or ""
                                for part in choice.delta.tool_calls or []:
                                    entry = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                                    entry["id"] = part.id or entry["id"]
                                    if part.function is not None:
                                        entry["name"] += part.function.name or ""
                                        entry["arguments"] += part.function.arguments or ""
                        ordered = [calls[index] for index in sorted(calls)]
                        messages.append(
                            {
                                "role": "assistant",
                                "content": content or None,
                                "tool_calls": [
                                    {
                                        "id": c["id"],
                                        "type": "function",
                                        "function": {"name": c["name"], "arguments": c["arguments"]},
                                    }
                                    for c in ordered
                                ],
                            }
                        )
                        for c in ordered:
                            result = await client.call_tool(c["name"], json.loads(c["arguments"]))
                            assert not result.is_error, result
                            text = "\n".join(b.text for b in result.content if isinstance(b, TextContent))
                            messages.append({"role": "tool", "tool_call_id": c["id"], "content": text})

                # One untimed task each first (imports, connection pools, the body's first audit write).
                await runner_task(-1)
                await bare_task(-1)
                for r in range(rounds):
                    order = [("runner", runner_task), ("bare", bare_task)]
                    if r % 2:
                        order.reverse()
                    for name, task in order:
                        start = len(fake.arrivals)
                        await task(r)
                        measured = _steps(fake.arrivals[start:])
                        (runner_steps if name == "runner" else bare_steps).append(measured)
                        sizes[name] = len(json.dumps(fake.requests[-1]))
                tokens = await _tokens_per_task(fake, session, tools, provider, wallet, workspace)
                await provider.aclose()
                await sdk.close()
        finally:
            body.close()
            ledger.close()
    _report(runner_steps, bare_steps, steps, tokens)
    print(f"  (last request of a task: runner {sizes['runner']} bytes, bare {sizes['bare']} bytes)")


async def _tokens_per_task(
    fake: TimedOpenAI,
    session: BodySession,
    tools: list[ToolDefinition],
    provider: OpenAIProvider,
    wallet: Wallet,
    workspace: Path,
) -> list[tuple[str, int, int, int, int, int]]:
    """(task, steps, input, cached, output, scripted input+output) for each scripted task of the CLI tests."""
    tasks = {
        "fix app.py (FIX)": agent_run_tests.FIX,
        "claims done (no tools)": [
            {"content": "All done, trust me.", "usage": {"input_tokens": 500, "output_tokens": 8}},
        ],
    }
    out: list[tuple[str, int, int, int, int, int]] = []
    for n, (name, turns) in enumerate(tasks.items()):
        (workspace / "app.py").write_text("def main():\n    return 1\n")
        for t in turns:
            calls = [FakeCall(name=c["name"], arguments=c["arguments"]) for c in t.get("tool_calls", [])]
            fake.script(Turn(content=t["content"], tool_calls=calls))
        before = len(fake.bill.served)
        run = new_run(workspace, 1000 + n)
        end = await work(
            run,
            profile=profile(tuple(agent_run_tests.TOOLS), 20),
            provider=provider,
            body=session,
            spending=wallet.task(run.task_id),
            gate=KillGate(),
            ask_approval=no_approval,
        )
        assert isinstance(end, Finished), end
        served = fake.bill.served[before:]
        scripted = sum(t["usage"]["input_tokens"] + t["usage"]["output_tokens"] for t in turns)
        out.append(
            (
                name,
                len(served),
                sum(s.input_tokens for s in served),
                sum(s.cache_read_tokens for s in served),
                sum(s.output_tokens for s in served),
                scripted,
            )
        )
    return out


def _report(
    runner_steps: list[list[float]],
    bare_steps: list[list[float]],
    steps: int,
    tokens: list[tuple[str, int, int, int, int, int]],
) -> None:
    runner_all = [s * 1000 for r in runner_steps for s in r]
    bare_all = [s * 1000 for r in bare_steps for s in r]
    rounds = len(runner_steps)
    print(f"one LLM step (model answer at once + one read_text_file), {rounds} rounds x {steps}-step tasks (ms)")
    for label, values in (("runner (work)", runner_all), ("bare SDK + MCP", bare_all)):
        print(
            f"  {label:<15} median {statistics.median(values):6.2f}   p90 {_p90(values):6.2f}   "
            f"min {min(values):6.2f}   max {max(values):7.2f}   n={len(values)}"
        )
    per_round = [
        statistics.median(r) * 1000 - statistics.median(b) * 1000 for r, b in zip(runner_steps, bare_steps, strict=True)
    ]
    per_round_p90 = [_p90(r) * 1000 - _p90(b) * 1000 for r, b in zip(runner_steps, bare_steps, strict=True)]
    median_overhead = statistics.median(per_round)
    print(
        f"  overhead per step (runner - bare), per round: median min {min(per_round):.2f} / "
        f"median {median_overhead:.2f} / max {max(per_round):.2f};  p90 median {statistics.median(per_round_p90):.2f}"
    )
    print(
        f"  runner / bare, median step ratio: {statistics.median(runner_all) / statistics.median(bare_all):.2f}x"
        f"   (target: overhead < {TARGET_MS:g} ms median)"
    )
    print("tokens per task, the scripted tasks of tests/runner/stack.py replayed through the real provider")
    print("  (counted by the fake from what it served: 4 bytes a token; 'scripted' is the usage the script claims)")
    for name, n, inp, cached, out, scripted in tokens:
        print(
            f"  {name:<24} {n} calls   input {inp:6d} (cached {cached:5d})   output {out:4d}   "
            f"total {inp + out:6d}   scripted {scripted:6d}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    anyio.run(main, args.rounds, args.steps)
