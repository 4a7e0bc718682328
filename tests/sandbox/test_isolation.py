# pyright: strict
"""What a command inside the overlay sandbox cannot do: escape the workspace, read secrets, reach the network."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import anyio.abc
import pytest

from sandbox import InvalidSandboxSpec, ProxyNetwork, default_toolchain_paths, minimal_path
from sandbox._bwrap_backend import BwrapBackend

from ._support import SANDBOX_PATH, make_spec, sh, snapshot

pytestmark = [pytest.mark.anyio, pytest.mark.bwrap]


async def test_writing_outside_the_workspace_fails_and_host_files_are_untouched(
    overlay: BwrapBackend, ws: Path, tmp_path: Path
) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "tool.txt").write_text("tool\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside secret\n")
    script = f"""
        echo pwned > {tools}/tool.txt && echo WROTE-TOOLCHAIN
        echo pwned > {outside}/secret.txt && echo WROTE-OUTSIDE
        cat {outside}/secret.txt && echo READ-OUTSIDE
        touch /usr/pwned && echo WROTE-USR
        echo pwned > /etc/passwd && echo WROTE-ETC
        cat /etc/shadow && echo READ-SHADOW
        true
    """
    spec = make_spec(ws, ["/bin/sh", "-c", script], toolchain_paths=[*default_toolchain_paths(), tools])
    async with await overlay.run(spec) as staged:
        assert staged.result.exit_code == 0
        assert "WROTE" not in staged.result.stdout and "READ" not in staged.result.stdout
        assert "Read-only file system" in staged.result.stderr
        assert staged.changes == ()
    assert (tools / "tool.txt").read_text() == "tool\n"
    assert (outside / "secret.txt").read_text() == "outside secret\n"
    assert not Path("/usr/pwned").exists()


async def test_home_directories_are_not_mounted_only_the_listed_toolchain_below_them(
    overlay: BwrapBackend, ws: Path
) -> None:
    exposed = {p.parts[2] for p in default_toolchain_paths() if p.parts[:2] == ("/", "root") and len(p.parts) > 2}
    hidden_names = sorted(set(os.listdir("/root")) - exposed)
    assert hidden_names, "the host's /root should hold something to look for"
    probes = " ".join(f"/root/{name}" for name in hidden_names)
    script = f'for p in {probes} /home/*/.bashrc; do test -e "$p" && echo "VISIBLE $p"; done; ls -A /root'
    async with await overlay.run(sh(ws, script + "; true")) as staged:
        assert "VISIBLE" not in staged.result.stdout
        assert set(staged.result.stdout.split()) == exposed


async def test_protected_paths_are_hidden_from_the_command(overlay: BwrapBackend, ws: Path, tmp_path: Path) -> None:
    (ws / "secrets").mkdir()
    (ws / "secrets" / "id_rsa").write_text("PRIVATE KEY\n")
    (ws / "env-link").symlink_to(".env")
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "credentials").write_text("tool credential\n")
    script = """
        cat .env env-link secrets/id_rsa "$TOOLS/credentials"
        ls -A secrets
        rm -rf .env secrets; mv .env moved-env; chmod 666 .env; echo x > .env
        umount .env && echo UNMOUNTED
        unshare --user true && echo NEW-USERNS
        grep CapEff /proc/self/status
        true
    """
    spec = make_spec(
        ws,
        ["/bin/sh", "-c", script],
        env={"PATH": SANDBOX_PATH, "TOOLS": str(tools)},
        hidden_paths=[".env", "secrets"],
        extra_hidden_abs=[tools / "credentials"],
        toolchain_paths=[*default_toolchain_paths(), tools],
    )
    async with await overlay.run(spec) as staged:
        output = staged.result.stdout + staged.result.stderr
        assert "hunter2" not in output and "PRIVATE KEY" not in output and "tool credential" not in output
        # No capability to unmount what hides them, and no user namespace to regain one in.
        assert "UNMOUNTED" not in output and "NEW-USERNS" not in output
        assert "CapEff:\t0000000000000000" in output
        assert staged.changes == ()


async def test_the_command_gets_exactly_the_given_environment(
    overlay: BwrapBackend, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWARM_TEST_SECRET", "s3cr3t-token-value")
    spec = make_spec(ws, ["/usr/bin/env"], env={"PATH": SANDBOX_PATH, "ONLY": "this"})
    async with await overlay.run(spec) as staged:
        # bwrap's --chdir also sets PWD, which is no secret.
        assert sorted(staged.result.stdout.splitlines()) == ["ONLY=this", f"PATH={SANDBOX_PATH}", f"PWD={ws}"]


async def test_path_entries_the_command_cannot_see_never_reach_it(overlay: BwrapBackend, ws: Path) -> None:
    (ws / "tools" / "bin").mkdir(parents=True)
    host_like = f"/root/.cargo/bin:/root/.pyenv/shims:.::relative/bin:/usr/local/bin:/usr/bin:{ws}/tools/bin:/bin"
    check = 'for d in $(echo "$PATH" | tr : " "); do test -d "$d" || echo "MISSING $d"; done; echo "PATH=$PATH"'
    async with await overlay.run(sh(ws, check, env={"PATH": host_like})) as staged:
        assert staged.result.exit_code == 0, staged.result.stderr
        assert staged.result.stdout.splitlines() == [f"PATH=/usr/local/bin:/usr/bin:{ws}/tools/bin:/bin"]


async def test_the_minimal_path_names_the_mounted_toolchains_bin_dirs_only(overlay: BwrapBackend, ws: Path) -> None:
    toolchain = [*default_toolchain_paths(), Path("/nonexistent/toolchain")]
    path = minimal_path(toolchain)
    check = 'for d in $(echo "$PATH" | tr : " "); do test -d "$d" || echo "MISSING $d"; done; command -v python3'
    spec = sh(ws, check, env={"PATH": path}, toolchain_paths=toolchain)
    async with await overlay.run(spec) as staged:
        assert staged.result.exit_code == 0, staged.result.stderr
        python = Path(staged.result.stdout.strip())
    entries = path.split(":")
    base = Path(sys.base_prefix).resolve()
    assert "/usr/bin" in entries and "/nonexistent/toolchain/bin" not in entries
    if not str(base).startswith("/usr/"):
        # A configured toolchain comes before the system's: `python3` is the exposed interpreter.
        assert entries[0] == str(base / "bin") and python.parent == base / "bin"


def test_the_minimal_path_refuses_a_toolchain_that_would_expose_a_home_directory() -> None:
    with pytest.raises(InvalidSandboxSpec):
        minimal_path([Path("/usr"), Path("/root")])


CONNECT = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    print("CONNECTED")
except OSError as error:
    print("FAILED", type(error).__name__)
"""


async def test_without_network_a_server_on_the_host_loopback_is_unreachable(overlay: BwrapBackend, ws: Path) -> None:
    accepted: list[str] = []

    async def handle(stream: anyio.abc.SocketStream) -> None:
        accepted.append("connection")
        await stream.aclose()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, handle)
        async with await overlay.run(make_spec(ws, ["python3", "-c", CONNECT, str(port)])) as staged:
            assert staged.result.stdout.startswith("FAILED"), staged.result
        group.cancel_scope.cancel()
    assert accepted == []


FETCH = """
import os, urllib.request
print(os.environ["HTTPS_PROXY"], os.environ["http_proxy"])
print(urllib.request.urlopen("http://example.invalid/hello", timeout=10).read().decode())
"""


class FakeProxy:
    """An HTTP responder on a unix socket standing in for the body's proxy; records request heads."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head:
                head += await stream.receive()
            self.requests.append(head.decode())
            body = b"hello through the proxy"
            await stream.send(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )


async def test_proxy_network_relays_http_through_the_unix_socket(
    overlay: BwrapBackend, ws: Path, tmp_path: Path
) -> None:
    proxy = FakeProxy()
    socket_path = tmp_path / "proxy.sock"
    listener = await anyio.create_unix_listener(socket_path)
    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, proxy.handle)
        spec = make_spec(ws, ["python3", "-c", FETCH], network=ProxyNetwork(socket_path=socket_path))
        async with await overlay.run(spec) as staged:
            assert staged.result.exit_code == 0, staged.result.stderr
            lines = staged.result.stdout.splitlines()
            assert lines == ["http://127.0.0.1:3128 http://127.0.0.1:3128", "hello through the proxy"]
        group.cancel_scope.cancel()
    assert len(proxy.requests) == 1
    assert proxy.requests[0].startswith("GET http://example.invalid/hello HTTP/1.1\r\n")


async def test_proxy_network_still_cannot_reach_the_host_loopback(
    overlay: BwrapBackend, ws: Path, tmp_path: Path
) -> None:
    socket_path = tmp_path / "proxy.sock"
    proxy_listener = await anyio.create_unix_listener(socket_path)
    tcp_listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp_listener.extra(anyio.abc.SocketAttribute.local_port)
    async with proxy_listener, tcp_listener:
        spec = make_spec(ws, ["python3", "-c", CONNECT, str(port)], network=ProxyNetwork(socket_path=socket_path))
        async with await overlay.run(spec) as staged:
            assert staged.result.stdout.startswith("FAILED"), staged.result


SIGNAL_AND_WAIT = """
import socket
with socket.create_connection(("127.0.0.1", 3128), timeout=10) as conn:
    conn.sendall(b"ready\\n")
    assert conn.recv(16) == b"go\\n"
"""


async def test_the_real_workspace_is_unchanged_while_and_after_the_command_runs(
    overlay: BwrapBackend, ws: Path, tmp_path: Path
) -> None:
    before = snapshot(ws)
    seen_while_running: list[bool] = []

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            assert await stream.receive() == b"ready\n"
            seen_while_running.append(snapshot(ws) == before)
            await stream.send(b"go\n")

    socket_path = tmp_path / "proxy.sock"
    listener = await anyio.create_unix_listener(socket_path)
    script = f"echo changed > a.txt; rm -rf docs; chmod 600 run.sh; mkdir new; python3 -c '{SIGNAL_AND_WAIT}'"
    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, handle)
        spec = sh(ws, script, network=ProxyNetwork(socket_path=socket_path))
        async with await overlay.run(spec) as staged:
            assert staged.result.exit_code == 0, staged.result.stderr
            assert len(staged.changes) == 7
        group.cancel_scope.cancel()
    assert seen_while_running == [True]
    assert snapshot(ws) == before
