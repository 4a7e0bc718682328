"""`swarm demo`: the whole loop on a sample workspace, with no keys and no network.

A body is started as a real MCP server over stdio (as an IDE would), and a scripted agent
drives it through the official MCP client: it reads and edits files, is refused at the
workspace's edges and at a secret, hits a budget, is stopped by the kill switch and
resumed, and undoes a change. Then the audit trail is verified and shown.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from body_mcp import Body, BodySettings
from body_mcp.explain import explain_event
from body_mcp.killswitch import LocalKillSwitch
from shared_protocol.config import load_config, parse_config, render_config

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


async def _agent(home: Path, workspace: Path) -> dict[str, str]:
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_AGENT": "demo-agent"}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "swarm_cli", "body", "--workspace", str(workspace)], env=env
    )
    ids: dict[str, str] = {}
    async with Client(params) as client:
        tools = await client.list_tools()
        _say("connect", f"body over stdio offers {len(tools.tools)} tools: {', '.join(t.name for t in tools.tools)}")

        async def call(name: str, **arguments: Any) -> Any:
            return await client.call_tool(name, arguments)

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
            "write_file", path="shop/CHANGELOG.md", content="- gadget price 25 -> 22\n", rationale="log the change"
        )
        _say("write", f"add a changelog: {_show(r)}")
        r = await call(
            "run_command",
            argv=["/bin/sh", "-c", "cat .env || true; echo 'total = 57' > shop/report.txt; echo done"],
            rationale="compute a report in the sandbox",
        )
        data: dict[str, Any] = r.structured_content or {}
        if r.is_error and data.get("code") == "sandbox_unavailable":
            _say("sandbox", "no sandbox here (apt-get install bubblewrap): commands are refused, never run bare")
        else:
            out = str(data.get("stdout", "")).strip().replace("\n", " | ")
            _say("sandbox", f"run_command in the sandbox printed '{out}' (the .env is hidden): {_show(r)}")
            r = await call(
                "run_command",
                argv=["/bin/sh", "-c", "for i in $(seq 1 12); do echo $i > shop/gen_$i.py; done"],
                rationale="generate a dozen modules at once",
            )
            _say("sandbox", f"a command writing 12 files: {_show(r)}")
        r = await call("read_text_file", path=".env", rationale="need the payment key")
        _say("secret", f"read .env: {_show(r)}")
        r = await call("read_text_file", path="../../etc/passwd", rationale="curious")
        _say("escape", f"read ../../etc/passwd: {_show(r)}")
        r = await call("write_file", path="notes.txt", content="x")
        _say("rationale", f"write without a rationale: {_show(r)}")
        for n in range(10):
            r = await call("write_file", path=f"drafts/d{n}.md", content=f"draft {n}\n", rationale="bulk drafts")
            if r.is_error:
                _say("budget", f"write #{n + 1} of a burst: {_show(r)}")
                break
        (home / "kill.json").parent.mkdir(parents=True, exist_ok=True)
        LocalKillSwitch(home / "kill.json").engage(reason="demo: human pressed stop", by="human:demo")
        _say("kill", "a human runs `swarm kill`")
        r = await call("write_file", path="shop/after_kill.py", content="x\n", rationale="keep going")
        _say("kill", f"write while killed: {_show(r)}")
        r = await call("list_directory", path="shop", rationale="look around while stopped")
        _say("kill", f"read-only list while killed: {_show(r)}")
        LocalKillSwitch(home / "kill.json").release()
        _say("resume", "a human runs `swarm resume`")
        r = await call("undo", id=ids["edit"], rationale="the price test is over; restore the old price")
        _say("undo", f"undo the price edit: {_show(r)}")
        r = await call("status", rationale="check budgets")
        budgets = {b["name"]: f"{b['used']:g}/{b['limit']:g}" for b in r.structured_content["budgets"]}
        _say("status", f"kill switch {r.structured_content['kill_switch']}, budgets {budgets}")
    return ids


def cmd_demo(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="swarm-demo-"))
    home, workspace = root / "home", root / "workspace"
    home.mkdir()
    for rel, text in _SAMPLE.items():
        (workspace / rel).parent.mkdir(parents=True, exist_ok=True)
        (workspace / rel).write_text(text)
    # The demo's own config: a small hourly file budget so the agent meets it.
    config = parse_config({"limits": {"file_mods_per_hour": 7}})
    (home / "swarm.toml").write_text(render_config(config))
    print(f"Swarm demo — sample workspace {workspace}\n", flush=True)
    try:
        anyio.run(_agent, home, workspace)
        body = Body(
            BodySettings(workspace=workspace.resolve(), home=home.resolve(), config=load_config(home / "swarm.toml"))
        )
        try:
            report = body.audit.verify()
            events = body.audit.tail(100)
            print("\nAudit trail (every call, allowed or refused, with the agent's rationale):", flush=True)
            for event in events:
                code = f" [{event.code}]" if event.code else ""
                print(
                    f"  #{event.seq:<3} {event.tool or event.kind:<16} {event.outcome:<8}{code:<24} {event.rationale}"
                )
            print(f"\n{report.summary()}")
            print("\nOne event explained:\n" + "\n".join("  " + line for line in explain_event(events[1]).splitlines()))
            price = (workspace / "shop/prices.py").read_text()
            print(f"\nAfter undo, shop/prices.py has the old price again: {'gadget' in price and '25' in price}")
        finally:
            body.close()
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
        return 0 if report.ok else 1
    finally:
        if args.keep:
            print(f"\n(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)
