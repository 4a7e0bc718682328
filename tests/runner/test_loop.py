"""The tool-calling loop against a real body (in process, the real guard and audit) and an in-memory model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from agent_runner import InMemoryProvider, ModelRequest, ModelTurn, ProviderUnavailable, TokenUsage, ToolCall
from agent_runner.body import BodySession, ToolReply
from agent_runner.conversation import ToolDefinition, ToolResultsMessage
from agent_runner.exceptions import BudgetRefused, ProviderError
from agent_runner.gate import KillGate
from agent_runner.loop import AgentProfile, Failed, Finished, Parked, TaskRun, first_message, work
from agent_runner.providers import Provider
from body_mcp import Body, build_server
from body_mcp.killswitch import LocalKillSwitch
from tests.conftest import make_body

pytestmark = pytest.mark.anyio

TOOLS = ("read_text_file", "write_file", "list_directory", "run_command", "request_approval")


def profile(**changes: Any) -> AgentProfile:
    values: dict[str, Any] = {
        "name": "worker-1",
        "logic_version": "lv-test",
        "system_prompt": "You fix things.",
        "tools": TOOLS,
        "max_steps": 10,
        "max_usd_per_task": 1.0,
        "max_output_tokens": 256,
        "task_timeout_s": 60.0,
    } | changes
    return AgentProfile(**values)


@dataclass
class Spent:
    """The loop's view of a wallet, recording what it was asked to do (the wallet has its own tests)."""

    refuse_after: int | None = None
    calls: int = 0
    settled: list[ModelTurn] = field(default_factory=list[ModelTurn])
    failures: list[ProviderError] = field(default_factory=list[ProviderError])
    aborted: int = 0

    async def complete(self, provider: Provider, request: ModelRequest) -> ModelTurn:
        if self.refuse_after is not None and self.calls >= self.refuse_after:
            raise BudgetRefused("the task's budget of $1.00 is spent", code="max_usd_per_task")
        self.calls += 1
        try:
            turn = await provider.complete(request)
        except ProviderError as error:
            self.failures.append(error)
            raise
        except BaseException:
            self.aborted += 1
            raise
        self.settled.append(turn)
        return turn


def turn(*calls: tuple[str, dict[str, Any]], content: str = "") -> ModelTurn:
    return ModelTurn(
        content=content,
        tool_calls=tuple(ToolCall(id=f"c{i}", name=name, arguments=args) for i, (name, args) in enumerate(calls)),
        stop_reason="tool_use" if calls else "end_turn",
        usage=TokenUsage(input_tokens=100, output_tokens=20),
    )


@pytest.fixture
async def session(workspace: Path, home: Path) -> AsyncIterator[tuple[BodySession, Body]]:
    body = make_body(workspace, home)
    async with Client(build_server(body)) as client:
        listed = await client.list_tools()
        tools = [
            ToolDefinition.from_mcp({"name": t.name, "description": t.description, "inputSchema": t.input_schema})
            for t in listed.tools
        ]
        yield BodySession(client, tools), body
    body.close()


def new_run(workspace: Path) -> TaskRun:
    run = TaskRun(task_id="task_1", title="fix the app", workspace=workspace)
    run.messages.append(first_message("fix the app", "main() should return 2", "python3 -c 'pass'"))
    return run


async def no_approval(run: TaskRun, call: ToolCall, reply: ToolReply) -> str | None:
    return None


async def test_the_model_edits_through_the_body_and_finishes(
    session: tuple[BodySession, Body], workspace: Path
) -> None:
    body, _ = session
    model = InMemoryProvider(
        [
            turn(("read_text_file", {"path": "src/app.py", "rationale": "see the code"}), content="Look first."),
            turn(
                ("write_file", {"path": "src/app.py", "content": "def main():\n    return 2\n", "rationale": "fix"}),
                content="Now fix it.",
            ),
            turn(content="main() returns 2 now."),
        ]
    )
    run, spent = new_run(workspace), Spent()
    end = await work(
        run, profile=profile(), provider=model, body=body, spending=spent, gate=KillGate(), ask_approval=no_approval
    )
    assert end == Finished(summary="main() returns 2 now.")
    assert (workspace / "src" / "app.py").read_text() == "def main():\n    return 2\n"
    assert run.steps == 3 and run.files == {"src/app.py"} and run.tool_calls == 2 and run.refusals == 0
    assert len(spent.settled) == 3 and spent.calls == 3
    # The model was offered exactly the agent's subset, and saw the file's content as the first tool result.
    assert sorted(t.name for t in model.requests[0].tools) == sorted(TOOLS)
    results = model.requests[1].messages[-1]
    assert isinstance(results, ToolResultsMessage) and "return 1" in results.results[0].content


async def test_a_refusal_goes_back_to_the_model_as_an_error(session: tuple[BodySession, Body], workspace: Path) -> None:
    body, _ = session
    model = InMemoryProvider(
        [turn(("read_text_file", {"path": ".env", "rationale": "peek"})), turn(content="I could not read it.")]
    )
    run = new_run(workspace)
    end = await work(
        run, profile=profile(), provider=model, body=body, spending=Spent(), gate=KillGate(), ask_approval=no_approval
    )
    assert isinstance(end, Finished)
    results = model.requests[1].messages[-1]
    assert isinstance(results, ToolResultsMessage)
    assert results.results[0].is_error and "protected_path" in results.results[0].content
    assert run.refusals == 1


async def test_a_call_the_bodys_kill_switch_refused_is_made_again_once_released_not_shown_to_the_model(
    session: tuple[BodySession, Body], workspace: Path
) -> None:
    """A new body that has not reached its brain yet, or one that has not read the resume its runner read, refuses a
    change for its kill switch: the body's state, not the call's answer (a model told so goes on without the change,
    and its task fails its check). The loop makes the call again once the body is released."""
    body, real = session
    kill = LocalKillSwitch(real.paths.kill_file)
    kill.engage(reason="the brain not reached yet", by="test")
    write = ("write_file", {"path": "src/app.py", "content": "def main():\n    return 2\n", "rationale": "fix"})
    model = InMemoryProvider([turn(write, content="Fix it."), turn(content="main() returns 2 now.")])
    run, ends = new_run(workspace), list[object]()

    async def go() -> None:
        ends.append(
            await work(
                run,
                profile=profile(),
                provider=model,
                body=body,
                spending=Spent(),
                gate=KillGate(),
                ask_approval=no_approval,
            )
        )

    async with anyio.create_task_group() as group:
        group.start_soon(go)
        with anyio.fail_after(10):
            while not any(e.code == "kill_switch_engaged" for e in real.audit.tail(10)):
                await anyio.sleep(0.05)
        assert not ends and len(model.requests) == 1, "the refusal was not the call's answer: the loop waits"
        kill.release()
    assert ends == [Finished(summary="main() returns 2 now.")]
    assert (workspace / "src" / "app.py").read_text() == "def main():\n    return 2\n"
    results = model.requests[1].messages[-1]
    assert isinstance(results, ToolResultsMessage) and not results.results[0].is_error, results
    assert run.refusals == 0 and run.files == {"src/app.py"}


async def test_budgets_end_a_task_that_goes_nowhere(session: tuple[BodySession, Body], workspace: Path) -> None:
    body, _ = session
    looping = [turn(("list_directory", {"path": ".", "rationale": "again"})) for _ in range(5)]
    end = await work(
        new_run(workspace),
        profile=profile(max_steps=3),
        provider=InMemoryProvider(looping),
        body=body,
        spending=Spent(),
        gate=KillGate(),
        ask_approval=no_approval,
    )
    assert isinstance(end, Failed) and "step budget" in end.reason and "3 model turns" in end.reason

    end = await work(
        new_run(workspace),
        profile=profile(),
        provider=InMemoryProvider(looping),
        body=body,
        spending=Spent(refuse_after=2),
        gate=KillGate(),
        ask_approval=no_approval,
    )
    assert isinstance(end, Failed) and end.reason.startswith("money budget:") and "$1.00" in end.reason


async def test_a_provider_error_fails_the_task_and_is_settled(
    session: tuple[BodySession, Body], workspace: Path
) -> None:
    body, _ = session
    spent = Spent()
    error = ProviderUnavailable("503 three times", provider="memory", model="m", status=503)
    end = await work(
        new_run(workspace),
        profile=profile(),
        provider=InMemoryProvider([error]),
        body=body,
        spending=spent,
        gate=KillGate(),
        ask_approval=no_approval,
    )
    assert isinstance(end, Failed) and "503 three times" in end.reason
    assert spent.failures == [error]


async def test_the_kill_switch_cuts_a_model_call_and_the_step_runs_again_after_resume(
    session: tuple[BodySession, Body], workspace: Path
) -> None:
    body, _ = session
    gate, spent = KillGate(), Spent()
    in_call = anyio.Event()
    hung: list[bool] = []

    async def hang(request: ModelRequest) -> ModelTurn:
        in_call.set()
        hung.append(True)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    model = InMemoryProvider([hang, turn(content="done after the resume")])
    ends: list[object] = []

    async def go() -> None:
        ends.append(
            await work(
                new_run(workspace),
                profile=profile(),
                provider=model,
                body=body,
                spending=spent,
                gate=gate,
                ask_approval=no_approval,
            )
        )

    async with anyio.create_task_group() as group:
        group.start_soon(go)
        await in_call.wait()
        gate.engage("brain", "drill")
        await anyio.sleep(0.05)
        assert spent.aborted == 1 and not ends  # cut at once, settled at its reservation, waiting for resume
        assert len(model.requests) == 1
        gate.release("brain")
    assert ends == [Finished(summary="done after the resume")]
    assert hung == [True] and spent.calls == 2


async def test_an_approval_refusal_parks_the_task_and_the_approved_call_is_replayed(
    workspace: Path, home: Path
) -> None:
    # Two-file actions need approval here; the runner asks for it (its own call), the task parks; once the decision
    # is approved the held call is replayed with it and the model is told.
    body = make_body(workspace, home, {"policy": {"approval_min_files": 2}})
    command = {
        "argv": ["sh", "-c", "echo a > a.txt && echo b > b.txt"],
        "rationale": "write two files",
    }
    model = InMemoryProvider([turn(("run_command", command)), turn(content="both written")])
    asked: list[str] = []
    async with Client(build_server(body)) as client:
        listed = await client.list_tools()
        session = BodySession(
            client,
            [ToolDefinition.from_mcp({"name": t.name, "inputSchema": t.input_schema}) for t in listed.tools],
        )

        async def ask(run: TaskRun, call: ToolCall, reply: ToolReply) -> str | None:
            wanted = reply.refusal.get("ask")
            assert isinstance(wanted, dict) and wanted["file_count"] == 2
            answer = await session.call(
                "request_approval",
                {"summary": "two files", "confidence": 1.0, "files": wanted["files"], "rationale": "needed"},
            )
            decision = answer.structured["decision_id"]
            asked.append(decision)
            return decision

        run = new_run(workspace)
        end = await work(
            run, profile=profile(), provider=model, body=session, spending=Spent(), gate=KillGate(), ask_approval=ask
        )
        assert isinstance(end, Parked) and end.decision_id == asked[0] and run.held is not None
        assert not (workspace / "a.txt").exists()
        body.decisions.answer(asked[0], "approve", by="human:test", reason="fine")
        run.approved = True
        end = await work(
            run, profile=profile(), provider=model, body=session, spending=Spent(), gate=KillGate(), ask_approval=ask
        )
    body.close()
    assert end == Finished(summary="both written")
    assert (workspace / "a.txt").read_text() == "a\n" and run.files == {"a.txt", "b.txt"}
    told = model.requests[-1].messages[-1]
    assert "was approved" in getattr(told, "content", "")
