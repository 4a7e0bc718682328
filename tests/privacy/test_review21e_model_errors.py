"""Adversarial review of #21 (a model API key in what the runner keeps): a provider (or a proxy in front of it) that
echoes the key in an error event in the middle of its stream, through the real SDKs against a raw HTTP server on
127.0.0.1. What a failed try says becomes a task's failure reason: the runner's log, its transcript, the brain."""

from __future__ import annotations

import json
import secrets
import socket
import threading
from collections.abc import Generator
from contextlib import contextmanager

import anyio
import pytest

from agent_runner import (
    AnthropicProvider,
    ModelRequest,
    OpenAIProvider,
    ProviderError,
    RetryPolicy,
    UserMessage,
)
from shared_protocol.secrets import Secret

pytestmark = pytest.mark.anyio

ONCE = RetryPolicy(max_attempts=1, max_elapsed_s=10, initial_backoff_s=0.1, max_backoff_s=0.1)


@contextmanager
def echoing(events: Generator[bytes, str]) -> Generator[int]:
    """A server answering every POST `200 text/event-stream` with the events `events` makes of the request's
    credential (its `Authorization` bearer token or `x-api-key`), then closing."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                headers = dict(
                    (name.strip().lower(), value.strip())
                    for name, _, value in (line.partition(":") for line in head.decode().split("\r\n")[1:])
                )
                while len(body) < int(headers.get("content-length", "0")):
                    body += conn.recv(65536)
                key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
                payload = events.send(key)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" + payload
                )

    next(events)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        server.close()


def openai_error() -> Generator[bytes, str]:
    key = yield b""
    while True:
        error = {"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}}
        key = yield f"data: {json.dumps(error)}\n\n".encode()


def anthropic_error() -> Generator[bytes, str]:
    key = yield b""
    while True:
        error = {"type": "error", "error": {"type": "authentication_error", "message": f"invalid x-api-key {key}"}}
        key = yield f"event: error\ndata: {json.dumps(error)}\n\n".encode()


def ask() -> ModelRequest:
    return ModelRequest(system="be brief", messages=[UserMessage(content="hello")], tools=[], max_output_tokens=64)


async def test_an_api_key_echoed_in_a_stream_error_is_not_in_the_failure_reason() -> None:
    """Was a hole (low): an HTTP error answer's text is cleaned of the API key (`_failures.detail(secret=...)`), but
    an `error` event inside a 200 stream was not: OpenAI's `the answer broke off with an error: ...` and Anthropic's
    `the answer broke off: ...` carried the key as the server wrote it into the try's error, the task's failure
    reason, the runner's stderr and the brain. Reproduce: a server streaming `data: {"error": {"message": "...
    <key>"}}`; `str(error)` holds the key. Fixed: both stream parsers pass the provider's key to `detail`."""
    key = f"sk-planted-{secrets.token_hex(16)}"
    errors: list[str] = []
    with echoing(openai_error()) as port:
        provider = OpenAIProvider(
            model="gpt-4o", api_key=Secret(key), base_url=f"http://127.0.0.1:{port}/v1", timeout_s=5, retry=ONCE
        )
        try:
            with anyio.fail_after(10), pytest.raises(ProviderError) as raised:
                await provider.complete(ask())
            errors.append(str(raised.value))
        finally:
            await provider.aclose()
    with echoing(anthropic_error()) as port:
        claude = AnthropicProvider(
            model="claude-sonnet-4-6", api_key=Secret(key), base_url=f"http://127.0.0.1:{port}", timeout_s=5, retry=ONCE
        )
        try:
            with anyio.fail_after(10), pytest.raises(ProviderError) as raised:
                await claude.complete(ask())
            errors.append(str(raised.value))
        finally:
            await claude.aclose()
    assert all("broke off" in error for error in errors), errors
    assert [key in error for error in errors] == [False, False], errors
