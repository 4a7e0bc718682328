"""What an open dashboard's polls cost the brain, per endpoint and per round, with a seeded history; and how long a
kill waits when it lands in the middle of the pages' poll rounds.

    uv run python bench/profile_dashboard_polls.py [--days 7] [--agents 8] [--bodies 32] [--pages 4] [--repeat 5]
        [--audit-minutes 0]

One brain in this process on a real SQLite file, seeded (straight into its tables, so seeding takes seconds) with
`--days` of `--agents` agents working at the anomaly load's quiet rates (6 tasks an hour each, every task claimed
and finished with its history; one LLM call a minute each; a decision for one task in ten; presence minutes of the
brain and `--bodies` bodies), `--bodies` registered. `--audit-minutes` adds what bench_dashboard_kill.py's fleet
writes in that many minutes: 8 agents streaming a write every 100 ms (audit events, 80 a second) and the presence
minutes of the brain and every body; `--days 0 --audit-minutes 10` is that bench's brain after ten minutes.
Requests go through `httpx.ASGITransport` with a dashboard session cookie, as the page sends them.

Prints, for each endpoint a page polls: wall time, CPU on the event loop's thread (what every other request waits
behind), and the process's CPU (the SQLite reader's thread included); then one page's round (the nine in turn), and
`--pages` pages' rounds at once (as the bench's pages, opened together, poll); then `--pages` pages polling at
once with a captain's `POST /v1/kill` sent 10 ms into their round (its latency against a kill on an idle brain).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
from _dashboard_clients import POLLS  # what an open page polls, as the kill bench's pages do

from brain_server import Brain, BrainSettings, build_app, issue_token
from brain_server.state import open_engine, sqlite_url
from shared_protocol.audit import AuditEvent, Impact
from shared_protocol.brain import TaskEvent, UsageRecord
from shared_protocol.decisions import Answer, Decision


def seed_audit(path: Path, *, now: datetime, minutes: int, bodies: int, streaming: int = 8) -> dict[str, int]:
    """`minutes` of the bench's streaming agents: a write every 100 ms each (events shaped as a body's), and the
    presence minutes of the brain and every body."""
    start = now - timedelta(minutes=minutes)
    conn = sqlite3.connect(path)
    rows: list[tuple[str, int, str, str, str, str, str]] = []
    for b in range(streaming):
        body = f"body{b}"
        for seq in range(1, minutes * 600 + 1):
            at = (start + timedelta(milliseconds=100 * seq)).isoformat(timespec="microseconds")
            event = AuditEvent(
                seq=seq,
                id=f"act_{body}_{seq}",
                ts=at,
                kind="tool_call",
                body_id=body,
                agent=f"agent{b}",
                session="ses_bench",
                tool="write_file",
                arguments={"path": f"stream/{seq % 4}.txt", "content_sha256": "0" * 64, "content_bytes": 12},
                rationale="bench: an agent streaming",
                outcome="ok",
                files=[f"stream/{seq % 4}.txt"],
                duration_ms=1.5,
                prev_mac=f"{seq - 1:064x}",
                mac=f"{seq:064x}",
            )
            rows.append((body, seq, event.id, at, event.mac, event.model_dump_json(), at))
    conn.executemany("INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    subjects = ["brain"] + [f"body:body{b}" for b in range(bodies)]
    conn.executemany(
        "INSERT OR IGNORE INTO telemetry_presence (subject, minute) VALUES (?, ?)",
        (
            (s, (start + timedelta(minutes=m)).replace(second=0, microsecond=0).isoformat())
            for s in subjects
            for m in range(minutes + 1)
        ),
    )
    conn.commit()
    conn.close()
    return {"audit events": len(rows)}


def seed(path: Path, *, now: datetime, days: int, agents: int, bodies: int) -> dict[str, int]:
    """Write the history straight into the brain's tables (schema made by `open_engine` already)."""
    start = now - timedelta(days=days)
    conn = sqlite3.connect(path)
    tasks: list[tuple[object, ...]] = []
    events: list[tuple[str, str]] = []
    usage: list[tuple[str, str, str]] = []
    decisions: list[tuple[str, str, str, str, str]] = []
    n_task = 0
    for a in range(agents):
        agent = f"agent{a}"
        body = f"body{a}"
        for minute in range(days * 24 * 60):
            at = start + timedelta(minutes=minute, seconds=a)
            usage.append(
                (
                    f"use_{a}_{minute}",
                    body,
                    UsageRecord(
                        id=f"use_{a}_{minute}",
                        at=at,
                        agent=agent,
                        logic_version="lv-1",
                        task_id=f"task_{a}_{minute // 10}" if minute % 10 < 8 else None,
                        provider="openai",
                        model="gpt",
                        input_tokens=1200,
                        output_tokens=300,
                        usd=0.03,
                    ).model_dump_json(),
                )
            )
            if minute % 10:
                continue
            task_id = f"task_{a}_{minute // 10}"
            n_task += 1
            finished = at + timedelta(minutes=9)
            state = "succeeded" if n_task % 5 else "failed"
            tasks.append(
                (
                    task_id,
                    f"a task of {agent} #{minute // 10}",
                    "what to do, in a few sentences of description",
                    5.0,
                    state,
                    at.isoformat(),
                    "approver",
                    body,
                    agent,
                    at.isoformat(),
                    None,
                    1,
                    "done" if state == "succeeded" else "tests failed",
                    finished.isoformat(),
                    "pytest -q",
                    int(state == "succeeded"),
                )
            )
            history = [
                TaskEvent(at=at, kind="created", by="approver"),
                TaskEvent(at=at, kind="claimed", by=body, agent=agent, logic_version="lv-1", detail={"body_id": body}),
                TaskEvent(
                    at=finished, kind="outcome", by=body, agent=agent, logic_version="lv-1", detail={"state": state}
                ),
            ]
            if n_task % 10 == 0:
                decision_id = f"dec_{task_id}"
                pending = finished > now - timedelta(hours=1) and n_task % 20 == 0
                decision = Decision(
                    id=decision_id,
                    state="pending" if pending else "approved",
                    needs="human",
                    summary=f"{agent} asks to change the release notes",
                    rationale="the change touches a protected path",
                    confidence=0.8,
                    impact=Impact(files=1),
                    options=["approve", "deny"],
                    agent=agent,
                    body_id=body,
                    action=None,
                    created_at=at + timedelta(minutes=2),
                    deadline=now + timedelta(days=1),
                    answers=[]
                    if pending
                    else [Answer(verdict="approved", by="approver", reason="ok", at=at + timedelta(minutes=3))],
                    rules_version="r1",
                )
                decisions.append(
                    (
                        decision_id,
                        decision.state,
                        decision.deadline.isoformat(),
                        body,
                        decision.model_dump_json(),
                    )
                )
                history.insert(
                    2,
                    TaskEvent(
                        at=at + timedelta(minutes=2),
                        kind="parked",
                        by=body,
                        agent=agent,
                        detail={"decision_id": decision_id},
                    ),
                )
            events += [(task_id, e.model_dump_json()) for e in history]
    conn.executemany(
        "INSERT INTO tasks (id, title, description, value_usd, state, created_at, created_by, claimed_body, "
        "claimed_agent, claimed_at, lease_expires, attempts, outcome_summary, finished_at, acceptance, verified) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        tasks,
    )
    conn.executemany("INSERT INTO task_events (task_id, event) VALUES (?, ?)", events)
    conn.executemany("INSERT INTO usage_records (id, body_id, record) VALUES (?, ?, ?)", usage)
    conn.executemany("INSERT INTO decisions (id, state, deadline, body_id, decision) VALUES (?, ?, ?, ?, ?)", decisions)
    subjects = ["brain"] + [f"body:body{b}" for b in range(bodies)]
    minutes = [(start + timedelta(minutes=m)).replace(second=0, microsecond=0) for m in range(days * 24 * 60)]
    conn.executemany(
        "INSERT OR IGNORE INTO telemetry_presence (subject, minute) VALUES (?, ?)",
        ((s, m.isoformat()) for s in subjects for m in minutes),
    )
    conn.commit()
    conn.close()
    return {"tasks": len(tasks), "task events": len(events), "usage records": len(usage), "decisions": len(decisions)}


async def timed(client: httpx.AsyncClient, path: str) -> tuple[float, float, float, int]:
    wall, loop_cpu, cpu = time.perf_counter(), time.thread_time(), time.process_time()
    response = await client.get(path)
    response.raise_for_status()
    return (
        time.perf_counter() - wall,
        time.thread_time() - loop_cpu,
        time.process_time() - cpu,
        len(response.content),
    )


async def main(days: int, agents: int, bodies: int, pages: int, repeat: int, audit_minutes: int) -> None:
    print(f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="profile-dash-") as tmp:
        path = Path(tmp) / "brain.db"
        settings = BrainSettings(database_url=sqlite_url(path))
        state = await open_engine(settings.database_url)
        await state.close()
        now = datetime.now(UTC)
        started = time.perf_counter()
        counts = seed(path, now=now, days=days, agents=agents, bodies=bodies)
        counts |= seed_audit(path, now=now, minutes=audit_minutes, bodies=bodies)
        print(
            f"seeded {days} days of {agents} agents and {audit_minutes} minutes of the bench's streaming "
            f"in {time.perf_counter() - started:.0f} s: "
            + ", ".join(f"{v:,} {k}" for k, v in counts.items())
            + f"; {path.stat().st_size / 1e6:.0f} MB"
        )
        state = await open_engine(settings.database_url)
        brain = Brain(settings, state=state)
        async with brain.running():
            app = build_app(brain)
            tokens = [await issue_token(state, role="approver", label=f"page{n}", at=brain.now()) for n in range(pages)]
            captain = await issue_token(state, role="captain", label="captain", at=brain.now())
            for b in range(bodies):
                body = await issue_token(state, role="body", label=f"b{b}", at=brain.now())
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://brain") as c:
                    registration = {"body_id": f"body{b}", "workspace": f"/w/{b}", "hostname": "h", "version": "1"}
                    headers = {"Authorization": f"Bearer {body}"}
                    (await c.post("/v1/bodies/register", json=registration, headers=headers)).raise_for_status()
            clients: list[httpx.AsyncClient] = []
            for token in tokens:
                client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://brain")
                (
                    await client.post("/session", json={"token": token}, headers={"Origin": "http://brain"})
                ).raise_for_status()
                clients.append(client)
            page = clients[0]
            for path_ in POLLS:
                await timed(page, path_)  # (warm)

            def afresh() -> None:
                # (what an event published does, or 2 s passing: the pages' next reads compute again, not from the
                # snapshot, `dashboard.snapshots`; every figure below is of reads computed afresh unless it says not)
                brain.hub.published += 1

            async def timed_afresh(path_: str) -> tuple[float, float, float, int]:
                afresh()
                return await timed(page, path_)

            print(
                f"{'endpoint':34} {'wall ms':>8} {'loop CPU ms':>12} {'CPU ms':>8} {'bytes':>10} "
                f"{'CPU ms from a snapshot':>23}  (median of {repeat})"
            )
            for path_ in POLLS:
                runs = [await timed_afresh(path_) for _ in range(repeat)]
                wall, loop, cpu = (statistics.median(r[i] * 1000 for r in runs) for i in range(3))
                kept = statistics.median([(await timed(page, path_))[2] * 1000 for _ in range(repeat)])
                print(f"{path_:34} {wall:8.1f} {loop:12.1f} {cpu:8.1f} {runs[0][3]:10,} {kept:23.1f}")

            async def round_of(client: httpx.AsyncClient) -> None:
                for path_ in POLLS:
                    (await client.get(path_)).raise_for_status()

            for label, polling in (
                ("one page round (9 in turn)", clients[:1]),
                (f"{pages} pages' rounds at once", clients),
            ):
                rounds: list[tuple[float, float, float]] = []
                for _ in range(repeat):
                    afresh()
                    wall, loop_cpu, cpu = time.perf_counter(), time.thread_time(), time.process_time()
                    async with anyio.create_task_group() as group:
                        for client in polling:
                            group.start_soon(round_of, client)
                    rounds.append(
                        (time.perf_counter() - wall, time.thread_time() - loop_cpu, time.process_time() - cpu)
                    )
                wall, loop, cpu = (statistics.median(r[i] * 1000 for r in rounds) for i in range(3))
                print(f"{label:34} {wall:8.1f} {loop:12.1f} {cpu:8.1f}")

            captain_headers = {"Authorization": f"Bearer {captain}"}
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://brain") as cap:

                async def kill_ms() -> float:
                    start = time.perf_counter()
                    (await cap.post("/v1/kill", json={"reason": "profile"}, headers=captain_headers)).raise_for_status()
                    took = time.perf_counter() - start
                    (
                        await cap.post("/v1/resume", json={"reason": "profile"}, headers=captain_headers)
                    ).raise_for_status()
                    return took * 1000

                idle = [await kill_ms() for _ in range(repeat)]
                busy: list[float] = []
                for _ in range(repeat):
                    async with anyio.create_task_group() as group:
                        for client in clients:
                            group.start_soon(round_of, client)
                        await anyio.sleep(0.01)
                        busy.append(await kill_ms())
            print(
                f"POST /v1/kill: idle brain median {statistics.median(idle):.1f} ms (max {max(idle):.1f}); "
                f"10 ms into {pages} pages' rounds median {statistics.median(busy):.1f} ms (max {max(busy):.1f})"
            )
            for client in clients:
                await client.aclose()
        await state.close()
    print(f"load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--bodies", type=int, default=32)
    parser.add_argument("--pages", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--audit-minutes", type=int, default=0, help="minutes of the kill bench's streaming")
    args = parser.parse_args()
    anyio.run(main, args.days, args.agents, args.bodies, args.pages, args.repeat, args.audit_minutes)
