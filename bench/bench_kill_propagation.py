"""Kill propagation: the brain's kill → every one of 8 linked bodies refusing mutating calls.

    uv run python bench/bench_kill_propagation.py [--trials 100] [--bodies 8] [--via api|discord|both]

A real brain (uvicorn, SQLite) on 127.0.0.1 and 8 bodies linked to it over loopback HTTP
(event streams), in one process. Each trial engages the kill and times until every body's
guard would refuse a mutating call (its kill switch engaged), then resumes. Two ways in:

- `api`: `POST /v1/kill` with the captain's bearer token. Target p99 < 100 ms (issue #4).
- `discord`: a `/kill-autonomous` interaction as Discord sends it, Ed25519-signed (PyNaCl) and
  verified by the brain (signature, timestamp window, replay check, user list). Required < 5 s;
  target p99 < 200 ms (issue #5).

Prints p50/p99/max per way, and the discord/api ratio of medians (the cost of verification).

What this does not measure (issue #22): the bodies run in this process with the brain, and a trial ends when
each body's kill switch reads engaged, a flag, not a refused call. `bench_kill_fanout.py` measures the kill
reaching real body processes as each one's first refused `write_file`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx

from body_mcp import Body, BodySettings
from brain_server import BrainSettings, SqliteStateEngine, issue_token, run
from brain_server.state import sqlite_url
from brain_server.wake.interactions import DiscordAccess
from brain_server.wake.setup import WakeSetup
from shared_protocol.config import parse_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait(predicate: object, timeout: float = 10) -> None:
    assert callable(predicate)
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.0005)


class _SignedDiscord:
    """Sends interactions as Discord does: Ed25519 over the timestamp and the raw body."""

    def __init__(self) -> None:
        from nacl.signing import SigningKey

        self.key = SigningKey.generate()
        self._ids = itertools.count(1)

    @property
    def public_key(self) -> str:
        return self.key.verify_key.encode().hex()

    def request(self, command: str) -> tuple[bytes, dict[str, str]]:
        payload = {
            "id": str(next(self._ids)),
            "application_id": "1",
            "type": 2,
            "token": "t",
            "version": 1,
            "member": {"user": {"id": CAPTAIN_ID, "username": "captain"}, "roles": []},
            "data": {
                "id": "1",
                "name": command,
                "type": 1,
                "options": [{"name": "reason", "type": 3, "value": "bench"}],
            },
        }
        body = json.dumps(payload).encode()
        stamp = str(int(time.time()))
        signature = self.key.sign(stamp.encode() + body).signature.hex()
        return body, {
            "X-Signature-Ed25519": signature,
            "X-Signature-Timestamp": stamp,
            "Content-Type": "application/json",
        }


CAPTAIN_ID = "100"


async def main(trials: int, n_bodies: int, via: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db, port = root / "brain.db", _free_port()
        state = await SqliteStateEngine.open(db)
        captain_token = await issue_token(state, role="captain", label="captain", at=datetime.now(UTC))
        # A body token speaks for one body (bound on first use): one each.
        body_tokens = [
            await issue_token(state, role="body", label=f"body {n}", at=datetime.now(UTC)) for n in range(n_bodies)
        ]
        await state.close()
        url = f"http://127.0.0.1:{port}"
        stop, ready = anyio.Event(), anyio.Event()
        settings = BrainSettings(host="127.0.0.1", port=port, database_url=sqlite_url(db), durability="crash")
        discord = _SignedDiscord()
        wake = WakeSetup(discord=DiscordAccess.from_hex(discord.public_key, captain_ids=frozenset({CAPTAIN_ID})))
        bodies: list[Body] = []
        for n in range(n_bodies):
            ws = root / f"ws{n}"
            ws.mkdir()
            bodies.append(
                Body(
                    BodySettings(
                        workspace=ws,
                        home=root / "home",
                        config=parse_config({}),
                        brain_url=url,
                        brain_token=body_tokens[n],
                    )
                )
            )
        times: dict[str, list[float]] = {way: [] for way in (["api", "discord"] if via == "both" else [via])}
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: run(
                    settings,
                    on_ready=lambda _u: ready.set(),
                    stop=stop,
                    handle_signals=False,
                    wake=wake,
                )
            )
            await ready.wait()
            for body in bodies:
                assert body.link is not None
                tg.start_soon(body.link.run)
            await _wait(lambda: all(b.brain_state == "connected" and not b.kill_switch.state().engaged for b in bodies))
            headers = {"Authorization": f"Bearer {captain_token}"}
            async with httpx.AsyncClient(base_url=url, headers=headers) as captain:

                async def engage(way: str) -> None:
                    if way == "api":
                        response = await captain.post("/v1/kill", json={"reason": "bench"})
                    else:
                        body, signed = discord.request("kill-autonomous")
                        response = await captain.post("/discord/interactions", content=body, headers=signed)
                    response.raise_for_status()

                for trial in range(trials):
                    for way, measured in times.items():
                        start = time.perf_counter()
                        await engage(way)
                        await _wait(lambda: all(b.kill_switch.state().engaged for b in bodies))
                        measured.append(time.perf_counter() - start)
                        (await captain.post("/v1/resume", json={"reason": f"bench {trial}"})).raise_for_status()
                        await _wait(lambda: not any(b.kill_switch.state().engaged for b in bodies))
            stop.set()
            tg.cancel_scope.cancel()
        for body in bodies:
            body.close()
    print(f"kill propagation, request -> all {n_bodies} bodies refusing, {trials} trials each (ms)")
    targets = {"api": "required < 5000, target p99 < 100", "discord": "required < 5000, target p99 < 200"}
    medians: dict[str, float] = {}
    for way, measured in times.items():
        ms = sorted(t * 1000 for t in measured)
        p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        medians[way] = statistics.median(ms)
        print(f"  {way:<8} p50 {medians[way]:7.2f}   p99 {p99:7.2f}   max {ms[-1]:7.2f}   ({targets[way]})")
    if len(medians) == 2:
        print(f"  signed Discord interaction vs bearer API, median ratio: {medians['discord'] / medians['api']:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--bodies", type=int, default=8)
    parser.add_argument("--via", choices=["api", "discord", "both"], default="both")
    args = parser.parse_args()
    anyio.run(main, args.trials, args.bodies, args.via)
