"""`swarm demo`: the whole loop on one machine, with no keys and no network.

A brain serves on 127.0.0.1; a body is started as a real MCP server over stdio (as an IDE
would) and linked to it; a scripted agent drives the body through the official MCP
client: it claims a task, reads and edits files, runs commands in the sandbox, asks for
an approval the demo answers, is refused at the workspace's edges and at a secret, hits
a budget, is stopped by the brain's kill switch and resumed, undoes a change and reports
the task's outcome. Then the audit trail is verified and shown.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from body_mcp import Admin, BodySettings
from body_mcp.explain import explain_event
from brain_server import BrainSettings, issue_token, run
from brain_server.auth import new_pairing
from brain_server.state import open_engine, sqlite_url
from brain_server.wake.memory import MemoryChannel
from brain_server.wake.setup import WakeSetup
from shared_protocol.config import load_config, parse_config, render_config

from . import _context, demo_agents

_SAMPLE = {
    "README.md": "# Acme shop\n\nA tiny sample project for the Swarm demo.\n",
    "shop/prices.py": (
        "PRICES = {\n    'widget': 10,\n    'gadget': 25,\n}\n\n\n"
        "def total(items):\n    return sum(PRICES[i] for i in items)\n"
    ),
    ".env": "STRIPE_KEY=sk_live_never_shown\n",
}


def _say(step: str, text: str) -> None:
    print(f"  [{step}] {text}", flush=True)


def _show(result: Any) -> str:
    data: dict[str, Any] = result.structured_content or {}
    if result.is_error:
        refusal = data.get("refusal") or data
        return f"REFUSED {refusal.get('code')} ({refusal.get('rule')}): {refusal.get('message')}"
    if "applied" in data:
        return f"ok — applied {[c['path'] for c in data['changes'] if c['category'] != 'discarded']}"
    return "ok" + (f" — {data['changes']}" if "changes" in data else "")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _tokens(database_url: str) -> dict[str, str]:
    state = await open_engine(database_url)
    try:
        tokens = {
            r: await issue_token(state, role=r, label=f"demo-{r}", at=datetime.now(UTC)) for r in ("body", "captain")
        }
        for agent in ("worker-1", "worker-2"):  # paired: each agent's body proves its secret with its key
            tokens[f"{agent}:pairing"] = pairing = new_pairing()
            tokens[agent] = await issue_token(
                state, role="body", label=agent, at=datetime.now(UTC), agent=agent, pairing=pairing
            )
        return tokens
    finally:
        await state.close()


async def _loop(home: Path, workspace: Path) -> dict[str, Any]:
    """A brain on 127.0.0.1, a body linked to it over stdio, and a scripted agent doing a day's work."""
    db, port = home / "brain.db", _free_port()
    database_url = sqlite_url(db)
    tokens = await _tokens(database_url)
    url = f"http://127.0.0.1:{port}"
    stop, ready = anyio.Event(), anyio.Event()
    ids: dict[str, Any] = {}
    settings = BrainSettings(host="127.0.0.1", port=port, database_url=database_url, durability="crash")
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: run(
                settings,
                wake=WakeSetup.paging(MemoryChannel()),  # the demo plays the human: nobody is paged for real
                on_ready=lambda _u: ready.set(),
                stop=stop,
                handle_signals=False,
            )
        )
        with anyio.fail_after(10):
            await ready.wait()
        _say("brain", f"brain serving on {url} (SQLite {db.name}); tokens created for a body and a captain")
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {tokens['captain']}"}) as captain:
            task = {
                "title": "Lift gadget conversion",
                "description": "Conversion is down 5%: test a lower price.",
                "value_usd": 120,
            }
            assert (await captain.post("/v1/tasks", json=task)).status_code == 201
            _say("brain", "the captain queues a task: 'Lift gadget conversion'")
            ids = await _agent(home, workspace, url, tokens["body"], captain)
            print("\nAutonomy: agents take tasks from the brain, with nobody typing\n", flush=True)
            ids["autonomy"] = await demo_agents.autonomy(home.parent, home, url, captain, tokens, _SAMPLE)
        stop.set()
        tg.cancel_scope.cancel()
    return ids


async def _approve(captain: httpx.AsyncClient, decision: str, reason: str) -> str:
    """Approve `decision` as a human on the brain, unless its panel has answered already; says which happened (the
    brain's rule reviewers vote as it is made, so "a human approves" was told of decisions approved before)."""
    found = (await captain.get(f"/v1/decisions/{decision}")).json()
    if found["state"] == "pending":
        answered = await captain.post(f"/v1/decisions/{decision}/approve", json={"reason": reason})
        answered.raise_for_status()
        return f"a human approves it on the brain (the demo plays the human): {answered.json()['state']}"
    votes = [v for v in found.get("votes", []) if v.get("value") == "approve"]
    return (
        f"the brain's consensus panel had answered it already: {found['state']} "
        f"({len(votes)} approving votes, quorum {found.get('quorum', 0)} of {len(found.get('panel', []))})"
    )


async def _agent(home: Path, workspace: Path, url: str, token: str, captain: httpx.AsyncClient) -> dict[str, str]:
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_AGENT": "demo-agent", "SWARM_TOKEN": token}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "swarm_cli", "body", "--workspace", str(workspace), "--brain", url],
        env=env,
    )
    ids: dict[str, str] = {}
    _say("connect", "starting the body: `swarm body --workspace DIR --brain URL`, its own process (a few seconds)")
    async with Client(params) as client:
        tools = await client.list_tools()
        _say("connect", f"body over stdio, linked to the brain, offers {len(tools.tools)} tools")

        async def call(name: str, **arguments: Any) -> Any:
            return await client.call_tool(name, arguments)

        with anyio.fail_after(10):
            while (await call("status", rationale="wait for the brain link")).structured_content[
                "brain"
            ] != "connected":
                await anyio.sleep(0.05)
        r = await call("next_task", rationale="start the day: take the most valuable task")
        claimed: dict[str, Any] = r.structured_content or {}
        task: dict[str, Any] = claimed.get("task") or {}
        _say("task", f"next_task claims '{task.get('title')}' (worth ${task.get('value_usd')})")
        r = await call("read_text_file", path="shop/prices.py", rationale="understand pricing before changing it")
        _say("read", f"read shop/prices.py: {_show(r)}")
        r = await call(
            "edit_file",
            path="shop/prices.py",
            edits=[{"old_text": "'gadget': 25", "new_text": "'gadget': 22"}],
            rationale="KPI: gadget conversion is down; test a lower price",
        )
        ids["edit"] = r.structured_content["action_id"]
        _say("edit", f"lower the gadget price: {_show(r)}")
        r = await call(
            "run_command",
            argv=["/bin/sh", "-c", "cat .env || true; echo 'total = 57' > shop/report.txt; echo done"],
            rationale="compute a report in the sandbox",
        )
        data: dict[str, Any] = r.structured_content or {}
        sandboxed = not (r.is_error and data.get("code") == "sandbox_unavailable")
        if not sandboxed:
            _say("sandbox", "no sandbox here (apt-get install bubblewrap): commands are refused, never run bare")
        else:
            out = str(data.get("stdout", "")).strip().replace("\n", " | ")
            _say("sandbox", f"run_command in the sandbox printed '{out}' (the .env is hidden): {_show(r)}")
            generate = ["/bin/sh", "-c", 'for i in 1 2 3 4 5 6; do echo "VARIANT = $i" > shop/variant_$i.py; done']
            r = await call("run_command", argv=generate, rationale="generate six price-test variants")
            _say("approval", f"a command changing 6 files: {_show(r)}")
            r = await call(
                "request_approval",
                summary="add six price-test variants under shop/",
                confidence=0.85,
                files=[f"shop/variant_{i}.py" for i in range(1, 7)],
                rationale="six files need consensus (the brain's review panel votes)",
            )
            decision = r.structured_content["decision_id"]
            _say(
                "approval",
                f"request_approval -> {decision} is {r.structured_content['state']} "
                f"(needs {r.structured_content['needs']}); it returns at once",
            )
            _say("approval", await _approve(captain, decision, "fine for a test"))
            r = await call("run_command", argv=generate, decision_id=decision, rationale="apply the approved variants")
            _say("approval", f"the same command with the decision: {_show(r)} (the held result, not re-run)")
        r = await call("read_text_file", path=".env", rationale="need the payment key")
        _say("secret", f"read .env: {_show(r)}")
        r = await call("read_text_file", path="../../etc/passwd", rationale="curious")
        _say("escape", f"read ../../etc/passwd: {_show(r)}")
        r = await call("write_file", path="notes.txt", content="x")
        _say("rationale", f"write without a rationale: {_show(r)}")
        drafts = [f"drafts/d{n}.md" for n in range(10)]
        approval: dict[str, Any] = {}
        for n, path in enumerate(drafts):
            r = await call("write_file", path=path, content=f"draft {n}\n", rationale="bulk drafts", **approval)
            if r.is_error and r.structured_content["code"] == "approval_required" and not approval:
                _say("split", f"write #{n + 1} of a burst: {_show(r)}")
                r = await call(
                    "request_approval",
                    summary="write ten drafts",
                    confidence=0.9,
                    files=["drafts", *drafts[: n + 1]],  # the burst so far, the directory it made included
                    rationale="many small writes need the approval one big write would",
                )
                approval = {"decision_id": r.structured_content["decision_id"]}
                how = await _approve(captain, approval["decision_id"], "drafts: fine")
                _say("split", f"the agent asks ({approval['decision_id']}); {how}; the burst goes on")
                r = await call("write_file", path=path, content=f"draft {n}\n", rationale="bulk drafts", **approval)
            if r.is_error:
                _say("budget", f"write #{n + 1} of a burst: {_show(r)}")
                break
        await captain.post("/v1/kill", json={"reason": "demo: captain pressed stop"})
        _say("kill", "the captain engages the kill switch on the brain (POST /v1/kill)")
        with anyio.fail_after(10):
            while (await call("status", rationale="wait")).structured_content["kill_switch"] != "engaged":
                await anyio.sleep(0.01)
        r = await call("write_file", path="shop/after_kill.py", content="x\n", rationale="keep going")
        _say("kill", f"write while killed: {_show(r)}")
        r = await call("list_directory", path="shop", rationale="look around while stopped")
        _say("kill", f"read-only list while killed: {_show(r)}")
        await captain.post("/v1/resume", json={"reason": "demo: all clear"})
        with anyio.fail_after(10):
            while (await call("status", rationale="wait")).structured_content["kill_switch"] != "released":
                await anyio.sleep(0.01)
        _say("resume", "the captain resumes (POST /v1/resume)")
        r = await call("undo", id=ids["edit"], rationale="the price test is over; restore the old price")
        _say("undo", f"undo the price edit: {_show(r)}")
        if task.get("id"):
            r = await call(
                "report_outcome",
                task_id=task["id"],
                outcome="succeeded",
                summary="price test ran and was rolled back",
                rationale="close the task",
            )
            reported: dict[str, Any] = r.structured_content or {}
            _say("task", f"report_outcome: task is {reported['task']['state'] if 'task' in reported else reported}")
        r = await call("status", rationale="check budgets")
        budgets = {b["name"]: f"{b['used']:g}/{b['limit']:g}" for b in r.structured_content["budgets"]}
        _say(
            "status",
            f"kill switch {r.structured_content['kill_switch']}, brain {r.structured_content['brain']}, "
            f"budgets {budgets}",
        )
        status = (await captain.get("/v1/status")).json()
        _say(
            "brain",
            f"brain status: {len(status['bodies'])} body, kill engaged: {status['kill']['engaged']}, "
            f"queued tasks: {status['queued_tasks']}",
        )
    return ids


def _agent_chain(home: Path, agent: str) -> str:
    """What `swarm audit verify --agent NAME` says of an agent's own chain (its identity and state are per agent)."""
    config = load_config(home / "swarm.toml")
    settings = BodySettings(
        workspace=None, home=home.resolve(), config=config, agent_profile=_context.agent_profile(config, agent)
    )
    with Admin.open(settings, by="swarm:demo") as admin:
        return f"{agent}'s audit chain: {admin.verify().summary()}"


def cmd_demo(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="swarm-demo-"))
    home, workspace = root / "home", root / "workspace"
    home.mkdir()
    for rel, text in _SAMPLE.items():
        (workspace / rel).parent.mkdir(parents=True, exist_ok=True)
        (workspace / rel).write_text(text)
    # The demo's own config: a small hourly file budget so the agent meets it.
    config = parse_config({"limits": {"file_mods_per_hour": 14}})
    (home / "swarm.toml").write_text(render_config(config))
    demo_agents.write_agents_config(home)
    print(f"Swarm demo — sample workspace {workspace}\n", flush=True)
    try:
        found = anyio.run(_loop, home, workspace)
        agents: dict[str, Any] = found.get("autonomy", {})
        settings = BodySettings(
            workspace=workspace.resolve(), home=home.resolve(), config=load_config(home / "swarm.toml")
        )
        with Admin.open(settings, by="swarm:demo") as admin:
            report = admin.verify()
            events = admin.tail(100)
            edit = next(e for e in events if e.tool == "edit_file")
            print("\nAudit trail (every call, allowed or refused, with the agent's rationale):", flush=True)
            for event in events:
                code = f" [{event.code}]" if event.code else ""
                print(
                    f"  #{event.seq:<3} {event.tool or event.kind:<16} {event.outcome:<8}{code:<24} {event.rationale}"
                )
            print(f"\n{report.summary()}")
            print("\nOne event explained:\n" + "\n".join("  " + line for line in explain_event(edit).splitlines()))
            price = (workspace / "shop/prices.py").read_text()
            print(f"\nAfter undo, shop/prices.py has the old price again: {'gadget' in price and '25' in price}")
        chains = [_agent_chain(home, name) for name in ("worker-1", "worker-2")]
        print(
            "\nAutonomy summary:\n"
            f"  worker-1 went live on a readiness override a captain recorded for its logic version "
            f"{agents.get('override')} (the brain refuses --live without one until `swarm readiness` passes)\n"
            f"  its task: {agents.get('task_state')}, verified by the body: {agents.get('verified')}, "
            f"spend ${agents.get('usd', 0):.5f}; its work: branch {agents.get('branch') or '(none)'}, "
            f"commit {str(agents.get('commit', ''))[:12] or '(none)'}\n"
            f"  worker-2 was stopped mid model call by the kill switch in {agents.get('kill_ms', 0):.0f} ms\n"
            + "".join(f"  {line}\n" for line in chains),
            flush=True,
        )
        print(
            "\nWhere to look next:\n"
            + (
                f"  swarm audit tail --workspace {workspace}      (with SWARM_HOME={home})\n"
                if args.keep
                else "  swarm demo --keep                            keep this demo's workspace and audit trail\n"
            )
            + "  swarm init                                   write swarm.toml and get the mcp.json snippet\n"
            "  README.md                                    IDE setup, the guard, what is not finished yet"
        )
        return 0 if report.ok and all("OK" in line for line in chains) else 1
    finally:
        if args.keep:
            print(f"\n(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)
