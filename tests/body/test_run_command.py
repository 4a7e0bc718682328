"""run_command: real commands in the real sandbox; staged changes sorted, checked, applied all or nothing."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from body_mcp import Body, build_server
from body_mcp.killswitch import LocalKillSwitch
from tests.cli.inprocess import swarm_in_process
from tests.fakes.static_http import Reply, serve_static

from ..conftest import make_body, require_binary
from .helpers import call, ok, refused, until_running

pytestmark = pytest.mark.anyio

# The venv's interpreter lives under the repository, which the sandbox does not expose; the base one is a toolchain.
PY = str(Path(sys.base_prefix) / "bin" / "python3")


@pytest.fixture(autouse=True)
def _bwrap() -> None:
    require_binary("bwrap", "bubblewrap")


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


async def run(client: Client, script: str, **extra: Any) -> dict[str, Any]:
    result = await call(client, "run_command", argv=sh(script), **extra)
    data = result.structured_content
    assert isinstance(data, dict)
    data["_is_error"] = result.is_error
    return data  # pyright: ignore[reportUnknownVariableType]


async def test_writes_outside_the_workspace_fail_and_change_nothing_there(client: Client, outside: Path) -> None:
    data = await run(client, f"echo pwned > {outside}/secret.txt; echo pwned > /usr/pwned; echo done")
    assert "done" in data["stdout"]
    assert (outside / "secret.txt").read_text() == "outside secret\n"
    assert not Path("/usr/pwned").exists()


async def test_reads_outside_and_of_protected_paths_fail(client: Client, outside: Path) -> None:
    data = await run(client, f"cat {outside}/secret.txt; ls /root; cat .env; cat {Path.home()}/.bashrc; echo end")
    assert "outside secret" not in data["stdout"] and "hunter2" not in data["stdout"]
    assert data["stdout"].strip().endswith("end")


async def test_a_secret_written_just_before_a_command_is_hidden_in_that_command(
    client: Client, body: Body, workspace: Path
) -> None:
    # The body watches the workspace after its first walk: the next command learns of the new files from events.
    assert ok(await call(client, "run_command", argv=["true"]))["exit_code"] == 0
    assert body.scanner.watching and body.scanner.full_scans == 1
    (workspace / "src" / "deep" / "er").mkdir(parents=True)
    (workspace / "src" / "deep" / "er" / "server.pem").write_text("PRIVATE-KEY-just-written\n")
    (workspace / ".env.local").write_text("TOKEN=written-just-before\n")
    data = await run(client, "cat src/deep/er/server.pem .env.local; echo end")
    assert "just" not in data["stdout"] and data["stdout"].strip().endswith("end")
    assert body.scanner.full_scans == 1, "from the watch's events, not a new walk"


async def test_the_bodys_environment_secrets_are_absent(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret")
    data = await run(client, "env")
    assert "very-secret" not in data["stdout"] and "SWARM_HOME" not in data["stdout"]


async def test_network_off_cannot_reach_a_server_on_loopback(client: Client) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        code = (
            f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "    print('CONNECTED')\nexcept OSError as exc:\n    print('REFUSED', exc)"
        )
        data = ok(await call(client, "run_command", argv=[PY, "-c", code]))
        assert data["stdout"].startswith("REFUSED") and "CONNECTED" not in data["stdout"]
    finally:
        server.close()


async def test_asking_for_network_is_refused_when_no_domain_is_allowed(client: Client) -> None:
    refused(await call(client, "run_command", argv=["true"], network=True), "network_not_allowed")


async def test_a_fork_loop_and_a_memory_hog_are_contained_and_the_body_keeps_serving(
    workspace: Path, home: Path
) -> None:
    body = make_body(workspace, home, {"sandbox": {"max_processes": 32, "memory_mb": 256, "default_timeout_s": 10}})
    try:
        async with Client(build_server(body)) as client:
            with anyio.fail_after(30):
                bomb = await run(client, "bomb() { bomb | bomb & }; bomb; sleep 1; echo survived", timeout_s=5)
                assert bomb["changes"] == []
                hog = ok(
                    await call(client, "run_command", argv=[PY, "-c", "x = bytearray(1024**3); print('ALLOCATED')"])
                )
                assert "ALLOCATED" not in hog["stdout"] and "MemoryError" in hog["stderr"] and hog["exit_code"] != 0
                ok(await call(client, "read_text_file", path="README.md"))
    finally:
        body.close()


async def test_a_command_past_its_timeout_is_killed_with_its_children(client: Client, workspace: Path) -> None:
    from ..sandbox.test_limits import processes_with

    with anyio.fail_after(20):
        data = await run(client, "(sleep 3.2173; echo late > late.txt) & sleep 30", timeout_s=1)
    assert data["timed_out"] is True and data["exit_code"] is None
    assert processes_with(b"3.2173") == []  # the orphaned child is gone: nothing can write later
    assert not (workspace / "late.txt").exists()
    assert not any(c["path"] == "late.txt" for c in data["changes"])


async def test_more_files_than_the_blast_radius_changes_nothing(client: Client, workspace: Path) -> None:
    before = sorted(p.name for p in workspace.iterdir())
    data = await run(client, "for i in $(seq 1 11); do echo $i > f$i.txt; done; rm README.md")
    assert data["_is_error"] and data["refusal"]["code"] == "blast_radius" and data["applied"] is False
    assert sorted(p.name for p in workspace.iterdir()) == before


async def test_five_to_ten_files_need_an_approved_decision(client: Client, workspace: Path) -> None:
    data = await run(client, "for i in 1 2 3 4 5; do echo $i > g$i.txt; done")
    assert data["refusal"]["code"] == "approval_required" and data["applied"] is False
    assert not (workspace / "g1.txt").exists()


async def test_git_status_and_a_test_run_writing_caches_work_and_change_only_artifacts(
    client: Client, workspace: Path
) -> None:
    require_binary("git", "git")
    subprocess.run(["git", "init", "-q"], cwd=workspace, check=True)
    (workspace / ".gitignore").write_text(".pytest_cache/\n")
    (workspace / "test_ok.py").write_text(
        "import unittest\n\n\nclass T(unittest.TestCase):\n    def test_ok(self):\n        self.assertTrue(True)\n"
    )
    git = await call(client, "run_command", argv=["git", "status", "--short"])
    data = ok(git)
    assert data["exit_code"] == 0 and data["applied"] is False
    assert all(c["category"] == "discarded" for c in data["changes"])
    tests = ok(await call(client, "run_command", argv=[PY, "-m", "unittest", "-q", "test_ok"]))
    assert tests["exit_code"] == 0, tests["stderr"]
    # Bytecode caches are discarded: the host regenerates them, and a forged .pyc would be code it runs.
    assert tests["changes"] and all(c["category"] == "discarded" for c in tests["changes"])
    assert tests["applied"] is False and not (workspace / "__pycache__").exists()


async def test_a_file_deleted_by_a_command_comes_back_with_undo(client: Client, workspace: Path) -> None:
    data = await run(client, "rm README.md; mkdir -p new/dir; echo x > new/dir/f.txt")
    assert data["applied"] is True and not (workspace / "README.md").exists()
    ok(await call(client, "undo", id=data["action_id"]))
    assert (workspace / "README.md").read_text() == "# sample\n"
    assert not (workspace / "new").exists()


async def test_a_symlink_to_outside_created_by_a_command_is_not_applied(client: Client, workspace: Path) -> None:
    data = await run(client, "ln -s /etc/passwd pw; ln -s ../../outside out; echo ok > fine.txt")
    assert data["refusal"]["code"] == "path_outside_workspace" and data["applied"] is False
    assert not (workspace / "pw").exists() and not (workspace / "fine.txt").exists()


async def test_a_command_changing_a_protected_path_changes_nothing(client: Client, workspace: Path) -> None:
    data = await run(client, "echo x > .env.local; echo y > ok.txt")
    assert data["refusal"]["code"] == "protected_path" and not (workspace / "ok.txt").exists()
    data = await run(client, "echo '[x]' >> swarm.toml")
    assert data["refusal"]["code"] == "protected_path"
    assert (workspace / "swarm.toml").read_text() == "# a project-level swarm.toml\n"


async def test_the_kill_switch_kills_a_running_command_within_a_second(
    client: Client, home: Path, workspace: Path
) -> None:
    result: dict[str, Any] = {}
    marker = f"long-command-{uuid.uuid4().hex}"

    async def long_command() -> None:
        result.update(await run(client, f": {marker}; echo started > started.txt; sleep 60; echo x > after.txt"))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(long_command)
            await until_running(marker)  # (the kill must land while it runs, not before it starts)
            engaged = anyio.current_time()
            LocalKillSwitch(home / "kill.json").engage(reason="stop", by="test")
    assert anyio.current_time() - engaged < 1.5
    assert result["killed"] is True and result["applied"] is False
    assert not (workspace / "started.txt").exists()
    LocalKillSwitch(home / "kill.json").release()


async def test_file_tools_wait_while_a_command_runs(client: Client, workspace: Path) -> None:
    order: list[str] = []
    marker = f"command-{uuid.uuid4().hex}"

    async def command() -> None:
        await run(client, f": {marker}; sleep 0.7; echo cmd > cmd.txt")
        order.append("command")

    async def writer() -> None:
        await until_running(marker)  # the command runs (its sandbox is up): the write comes while it does
        ok(await call(client, "write_file", path="w.txt", content="w"))
        order.append("write")

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(command)
            tg.start_soon(writer)
    assert order == ["command", "write"]


async def test_shadow_mode_reports_a_commands_changes_and_applies_none(workspace: Path, home: Path) -> None:
    body = make_body(workspace, home, {"policy": {"mode": "shadow"}})
    try:
        async with Client(build_server(body)) as client:
            data = ok(await call(client, "run_command", argv=sh("echo x > new.txt; rm README.md")))
            assert data["mode"] == "shadow" and data["applied"] is False and len(data["changes"]) == 2
        assert not (workspace / "new.txt").exists() and (workspace / "README.md").exists()
    finally:
        body.close()


async def test_without_any_isolation_commands_are_refused_never_run_bare(workspace: Path, home: Path) -> None:
    from sandbox import Availability, InMemorySandbox

    ran: list[object] = []

    def script(spec: object) -> Any:
        ran.append(spec)
        raise AssertionError("must not run")

    unavailable = InMemorySandbox(script, availability=Availability(ok=False, reason="bwrap not found"))
    body: Body = make_body(workspace, home, sandbox=unavailable)
    try:
        async with Client(build_server(body)) as client:
            data = refused(await call(client, "run_command", argv=["/bin/true"]), "sandbox_unavailable")
            assert "bwrap not found" in data["message"]
    finally:
        body.close()
    assert ran == []


async def test_network_on_reaches_an_allowed_host_through_the_counting_proxy_only(workspace: Path, home: Path) -> None:
    server = contextlib.ExitStack()
    port = server.enter_context(serve_static(lambda _: Reply(200, b"hello"))).port
    code = (
        "import urllib.request, urllib.error\n"
        f"for url in ('http://127.0.0.1:{port}/', 'http://localhost:{port}/'):\n"
        "    try:\n"
        "        print(url, urllib.request.urlopen(url, timeout=5).status)\n"
        "    except urllib.error.HTTPError as exc:\n"
        "        print(url, exc.code)\n"
    )
    pinned = {"allowed_domains": ["127.0.0.1"], "pinned_hosts": {f"127.0.0.1:{port}": "127.0.0.1"}}
    body = make_body(workspace, home, {"sandbox": pinned})
    try:
        async with Client(build_server(body)) as client:
            data = ok(await call(client, "run_command", argv=[PY, "-c", code], network=True))
            assert f"http://127.0.0.1:{port}/ 200" in data["stdout"]
            assert f"http://localhost:{port}/ 403" in data["stdout"]
            event = body.audit.get(data["action_id"])
            assert event is not None and event.impact.api_calls == 1
            assert [(r["host"], r["allowed"]) for r in event.detail["requests"]] == [
                ("127.0.0.1", True),
                ("localhost", False),
            ]
            # Without network=true the same command reaches nothing.
            off = ok(await call(client, "run_command", argv=[PY, "-c", code]))
            assert " 200" not in off["stdout"]
    finally:
        body.close()
        server.close()


async def test_network_commands_are_recorded_irreversible_and_policy_can_demand_approval(
    workspace: Path, home: Path
) -> None:
    server = contextlib.ExitStack()
    port = server.enter_context(serve_static(lambda _: Reply(204))).port
    code = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/'); open('out.txt', 'w').write('x')"
    pinned = {"allowed_domains": ["127.0.0.1"], "pinned_hosts": {f"127.0.0.1:{port}": "127.0.0.1"}}
    config = {"sandbox": pinned, "policy": {"approve_irreversible": True}}
    body = make_body(workspace, home, config)
    try:
        async with Client(build_server(body)) as client:
            asked = await call(client, "run_command", argv=[PY, "-c", code], network=True)
            refusal = refused(asked, "approval_required")
            assert "irreversible" in refusal["message"] and not (workspace / "out.txt").exists()
            event = body.audit.get(refusal["action_id"])
            assert event is not None and event.detail["irreversible"] == "its network requests cannot be undone"
            auto = ok(await call(client, "request_approval", summary="call the API", confidence=0.9))
            assert auto["state"] == "approved"  # within the rules, but no human said so
            again = await call(
                client, "run_command", argv=[PY, "-c", code], network=True, decision_id=auto["decision_id"]
            )
            refused(again, "approval_required")
            decision = ok(
                await call(client, "request_approval", summary="call the API", confidence=0.9, irreversible=True)
            )
            assert decision["state"] == "pending" and decision["needs"] == "human"
            body.local_decisions.answer(decision["decision_id"], "approve", by="human:test", reason="ok")
            ran = ok(
                await call(
                    client, "run_command", argv=[PY, "-c", code], network=True, decision_id=decision["decision_id"]
                )
            )
            assert ran["applied"] and (workspace / "out.txt").exists()
            undone = ok(await call(client, "undo", id=ran["action_id"]))
            assert not (workspace / "out.txt").exists()
            assert undone["irreversible"] == [f"{ran['action_id']}: its network requests cannot be undone"]
    finally:
        body.close()
        server.close()


async def test_directories_a_command_creates_count_toward_the_blast_radius(client: Client, workspace: Path) -> None:
    data = await run(client, "for i in $(seq 1 11); do mkdir d$i; done")
    assert data["_is_error"] and data["refusal"]["code"] == "blast_radius" and data["applied"] is False
    assert not (workspace / "d1").exists()


async def test_a_setuid_copy_of_a_binary_made_by_a_command_lands_without_the_bit(
    client: Client, workspace: Path
) -> None:
    data = await run(client, "cp /bin/true su && chmod 4755 su && mkdir sg && chmod 2755 sg")
    assert data["applied"] is True, data
    assert (workspace / "su").stat().st_mode & 0o7777 == 0o755
    assert (workspace / "sg").stat().st_mode & 0o7777 == 0o755


async def test_a_command_sees_no_path_entry_that_is_not_mounted(
    client: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    unmounted = tmp_path / "toolchain" / "bin"
    unmounted.mkdir(parents=True)
    monkeypatch.setenv("PATH", f"{unmounted}:/usr/bin:/bin")
    data = await run(client, 'for d in $(echo "$PATH" | tr : " "); do test -d "$d" || echo "MISSING $d"; done; env')
    assert data["exit_code"] == 0, data["stderr"]
    assert "MISSING" not in data["stdout"] and str(unmounted) not in data["stdout"]
    (path,) = [line.removeprefix("PATH=") for line in data["stdout"].splitlines() if line.startswith("PATH=")]
    assert path and "/usr/bin" in path.split(":")


async def test_a_command_that_writes_past_its_quota_is_refused_and_nothing_is_applied(
    workspace: Path, home: Path
) -> None:
    body = make_body(workspace, home, {"sandbox": {"max_write_mb": 1}})
    try:
        async with Client(build_server(body)) as client:
            data = await run(client, "echo small > small.txt; head -c 4194304 /dev/zero > big.bin; echo done")
        assert data["_is_error"] and data["refusal"]["code"] == "too_large" and data["applied"] is False
        assert not (workspace / "small.txt").exists() and not (workspace / "big.bin").exists()
    finally:
        body.close()


async def test_a_three_megabyte_stdout_reaches_the_agent_capped_and_a_human_reads_what_was_kept(
    workspace: Path, home: Path
) -> None:
    body = make_body(workspace, home)
    try:
        async with Client(build_server(body)) as client:
            result = await call(client, "run_command", argv=sh("head -c 3000000 /dev/zero | tr '\\0' a; echo err >&2"))
            data = ok(result)
        [text] = result.content
        assert len(text.text) < 40_000  # type: ignore[union-attr]
        assert len(data["stdout"]) < 20_000 and data["stdout"].startswith("aaa") and data["truncated"] is True
        assert data["output"]["stdout"] == {
            "printed": 3_000_000,
            "kept": 1_000_000,  # [sandbox] max_output_bytes
            "omitted_from": 4096,  # [sandbox] reply_head_bytes
            "omitted_to": 1_000_000 - 12_288,  # [sandbox] reply_tail_bytes
        }
        assert data["stderr"] == "err\n"
    finally:
        body.close()
    env = {**os.environ, "SWARM_HOME": str(home)}
    read = [sys.executable, "-m", "swarm_cli", "audit", "output", data["action_id"], "--workspace", str(workspace)]
    kept = subprocess.run(read, env=env, capture_output=True, check=True, timeout=60)
    assert kept.stdout == b"a" * 1_000_000
    # (the same command in the test's process, `tests/cli/inprocess.py`: the one above is the real process's bytes)
    err = await swarm_in_process([*read[3:], "--stream", "stderr"], env)
    assert err.returncode == 0 and err.stdout == "err\n", err.stderr
    missing = await swarm_in_process([*read[3:5], "act_00", *read[6:]], env)
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
