"""The transport floor for bench_agent_kill.py: no runner, just the two connections an agent has.

    python bench/_bare_kill_client.py BRAIN_URL BODY_TOKEN BODY_ID LLM_BASE_URL API_KEY

It holds the brain's event stream (`GET /v1/events`, plain httpx) and, while the kill switch is released, one model
call through the real `openai` SDK (`max_retries=0`) to the fake, which holds it open. A `kill` event cancels the
call at once (the fake sees the connection close); a `resume` starts the next. Runs until terminated.
"""

from __future__ import annotations

import sys

import anyio
import httpx
from openai import AsyncOpenAI


async def main(brain_url: str, token: str, body_id: str, llm_url: str, api_key: str) -> None:
    llm = AsyncOpenAI(base_url=llm_url, api_key=api_key, max_retries=0, timeout=300)
    call: anyio.CancelScope | None = None

    async def one_call(scope: anyio.CancelScope) -> None:
        with scope:
            await llm.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "Fix the bug in app.py."}],
                max_completion_tokens=256,
            )

    headers = {"Authorization": f"Bearer {token}"}
    timeout = httpx.Timeout(60, connect=5)
    async with (
        httpx.AsyncClient(base_url=brain_url, headers=headers, timeout=timeout) as brain,
        anyio.create_task_group() as group,
        brain.stream("GET", "/v1/events", params={"body_id": body_id}) as stream,
    ):
        stream.raise_for_status()
        event = "message"
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line == "" and event in ("kill", "resume"):
                if event == "kill" and call is not None:
                    call.cancel()
                    call = None
                elif event == "resume" and call is None:
                    call = anyio.CancelScope()
                    group.start_soon(one_call, call)
                event = "message"
            elif line == "":
                event = "message"


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:6])
