"""The fake LLM APIs served on 127.0.0.1, and providers (the real SDK clients) pointed at them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
import pytest

from agent_runner import (
    AnthropicProvider,
    AssistantMessage,
    ModelRequest,
    OpenAIProvider,
    Provider,
    RetryPolicy,
    ToolCall,
    ToolDefinition,
    ToolResult,
    ToolResultsMessage,
    UserMessage,
)
from shared_protocol.secrets import Secret
from tests.fakes.anthropic_api import API_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.llm import FakeLLMServer
from tests.fakes.openai_api import API_KEY as OPENAI_KEY
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.serve import serve_app

READ = ToolDefinition(
    name="read_text_file",
    description="Read a file of the workspace.",
    input_schema={
        "type": "object",
        "properties": {"path": {"type": "string"}, "rationale": {"type": "string"}},
        "required": ["path", "rationale"],
    },
)
LIST = ToolDefinition(
    name="list_directory",
    description="List a directory.",
    input_schema={"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
)
SYSTEM = "You are a careful coding agent. Work only through your tools."


def ask(text: str = "Fix the failing test in src/app.py.", *, max_output_tokens: int = 1024) -> ModelRequest:
    return ModelRequest(
        system=SYSTEM, messages=[UserMessage(content=text)], tools=[READ, LIST], max_output_tokens=max_output_tokens
    )


def after_two_calls() -> ModelRequest:
    """A conversation where the model made two parallel calls and got both results back (one an error)."""
    calls = (
        ToolCall(id="call_a", name="read_text_file", arguments={"path": "src/app.py", "rationale": "see the bug"}),
        ToolCall(id="call_b", name="list_directory", arguments={"path": "tests"}),
    )
    return ModelRequest(
        system=SYSTEM,
        messages=[
            UserMessage(content="Fix the failing test."),
            AssistantMessage(content="Reading both.", tool_calls=calls),
            ToolResultsMessage(
                results=(
                    ToolResult(call_id="call_a", content="def main():\n    return 1\n"),
                    ToolResult(call_id="call_b", content='{"code": "path_denied"}', is_error=True),
                )
            ),
        ],
        tools=[READ, LIST],
        max_output_tokens=512,
    )


@dataclass
class Sleeps:
    """A `sleep` that records the waits asked for and returns at once (tests never really wait)."""

    waits: list[float] = field(default_factory=list[float])

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await anyio.lowlevel.checkpoint()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def openai_fake() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    async with serve_app(fake) as url:
        try:
            yield fake, url
        finally:
            fake.close()


@pytest.fixture
async def anthropic_fake() -> AsyncIterator[tuple[FakeAnthropic, str]]:
    fake = FakeAnthropic()
    async with serve_app(fake) as url:
        try:
            yield fake, url
        finally:
            fake.close()


RETRIES = RetryPolicy(max_attempts=4, max_elapsed_s=60, initial_backoff_s=0.5, max_backoff_s=4)


@pytest.fixture
async def openai(openai_fake: tuple[FakeOpenAI, str], sleeps: Sleeps) -> AsyncIterator[OpenAIProvider]:
    _, url = openai_fake
    provider = OpenAIProvider(
        model="gpt-4o", api_key=Secret(OPENAI_KEY), base_url=f"{url}/v1", timeout_s=5, retry=RETRIES, sleep=sleeps
    )
    yield provider
    await provider.aclose()


@pytest.fixture
async def claude(anthropic_fake: tuple[FakeAnthropic, str], sleeps: Sleeps) -> AsyncIterator[AnthropicProvider]:
    _, url = anthropic_fake
    provider = AnthropicProvider(
        model="claude-sonnet-4-6", api_key=Secret(ANTHROPIC_KEY), base_url=url, timeout_s=5, retry=RETRIES, sleep=sleeps
    )
    yield provider
    await provider.aclose()


@pytest.fixture(params=["openai", "anthropic"])
async def served(request: pytest.FixtureRequest, sleeps: Sleeps) -> AsyncIterator[tuple[Provider, FakeLLMServer]]:
    """Each real provider against its fake, for tests that hold for both."""
    fake: FakeLLMServer = FakeOpenAI() if request.param == "openai" else FakeAnthropic()
    async with serve_app(fake) as url:
        provider: Provider
        if request.param == "openai":
            provider = OpenAIProvider(
                model="gpt-4o", api_key=Secret(OPENAI_KEY), base_url=f"{url}/v1", retry=RETRIES, sleep=sleeps
            )
        else:
            provider = AnthropicProvider(
                model="claude-sonnet-4-6", api_key=Secret(ANTHROPIC_KEY), base_url=url, retry=RETRIES, sleep=sleeps
            )
        try:
            yield provider, fake
        finally:
            fake.close()
            await provider.aclose()
