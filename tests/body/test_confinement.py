"""Every escape class is refused, and nothing outside the workspace is read or written."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from mcp import Client

from body_mcp import Body

from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "raw",
    [
        "../outside/secret.txt",
        "src/../../outside/secret.txt",
        "/etc/passwd",
    ],
)
async def test_paths_leading_outside_are_refused_for_read_and_write(
    client: Client, workspace: Path, outside: Path, raw: str
) -> None:
    before = _snapshot(outside)
    refused(await call(client, "read_text_file", path=raw), "path_outside_workspace")
    refused(await call(client, "write_file", path=raw, content="pwned"), "path_outside_workspace")
    assert _snapshot(outside) == before
    assert Path("/etc/passwd").read_text() != "pwned"


async def test_a_sibling_directory_sharing_the_workspace_prefix_is_outside(client: Client, workspace: Path) -> None:
    sibling = workspace.parent / (workspace.name + "-evil")
    sibling.mkdir()
    (sibling / "x.txt").write_text("evil\n")
    refused(await call(client, "read_text_file", path=str(sibling / "x.txt")), "path_outside_workspace")
    refused(await call(client, "write_file", path=str(sibling / "y.txt"), content="a"), "path_outside_workspace")
    assert not (sibling / "y.txt").exists()


async def test_an_absolute_path_inside_the_workspace_is_allowed(client: Client, workspace: Path) -> None:
    data = ok(await call(client, "read_text_file", path=str(workspace / "src" / "app.py")))
    assert data["path"] == "src/app.py"


async def test_a_symlinked_file_leading_outside_is_refused(client: Client, workspace: Path, outside: Path) -> None:
    (workspace / "link.txt").symlink_to(outside / "secret.txt")
    before = _snapshot(outside)
    refused(await call(client, "read_text_file", path="link.txt"), "path_outside_workspace")
    refused(await call(client, "write_file", path="link.txt", content="pwned"), "path_outside_workspace")
    refused(
        await call(client, "edit_file", path="link.txt", edits=[{"old_text": "outside", "new_text": "x"}]),
        "path_outside_workspace",
    )
    assert _snapshot(outside) == before


async def test_a_symlinked_directory_leading_outside_is_refused(client: Client, workspace: Path, outside: Path) -> None:
    (workspace / "linkdir").symlink_to(outside, target_is_directory=True)
    (workspace / "rel").symlink_to("../outside", target_is_directory=True)
    before = _snapshot(outside)
    for raw in ("linkdir/secret.txt", "rel/secret.txt"):
        refused(await call(client, "read_text_file", path=raw), "path_outside_workspace")
        refused(
            await call(client, "write_file", path=raw.replace("secret", "new"), content="x"), "path_outside_workspace"
        )
    refused(await call(client, "list_directory", path="linkdir"), "path_outside_workspace")
    assert _snapshot(outside) == before
    assert not (outside / "new.txt").exists()


async def test_a_symlink_inside_the_workspace_is_followed_inside(client: Client, workspace: Path) -> None:
    (workspace / "alias").symlink_to("src", target_is_directory=True)
    assert ok(await call(client, "read_text_file", path="alias/app.py"))["path"] == "src/app.py"


async def test_a_directory_swapped_for_a_symlink_after_resolution_is_not_followed(
    body: Body, workspace: Path, outside: Path
) -> None:
    # The check-then-use window: resolve sees a real directory, then it becomes a link outside.
    resolved = body.workspace.resolve("src/new.txt")
    os.rename(workspace / "src", workspace / "src-real")
    (workspace / "src").symlink_to(outside, target_is_directory=True)
    from body_mcp import _fsops
    from body_mcp.exceptions import ToolRefused

    with pytest.raises(ToolRefused):
        _fsops.write_atomic(body.workspace, resolved.parts, b"pwned")
    assert not (outside / "new.txt").exists()


@pytest.mark.parametrize(
    "raw,code", [("a\x00b", "invalid_path"), ("~/x", "invalid_path"), ("~root/.bashrc", "invalid_path")]
)
async def test_malformed_paths_are_refused(client: Client, raw: str, code: str) -> None:
    refused(await call(client, "read_text_file", path=raw), code)
    refused(await call(client, "write_file", path=raw, content="x"), code)


async def test_fifos_sockets_and_devices_are_never_read_or_written(client: Client, workspace: Path) -> None:
    os.mkfifo(workspace / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(workspace / "sock"))
    (workspace / "null").symlink_to("/dev/null")
    try:
        # Reading a FIFO would block forever if opened naively: it must be refused at once.
        refused(await call(client, "read_text_file", path="pipe"), "special_file")
        refused(await call(client, "read_text_file", path="sock"), "special_file")
        refused(await call(client, "write_file", path="pipe", content="x"), "special_file")
        refused(await call(client, "read_text_file", path="null"), "path_outside_workspace")
    finally:
        sock.close()


async def test_device_files_in_the_workspace_are_refused(client: Client, workspace: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("creating a device node needs root")
    os.mknod(workspace / "zero", 0o600 | 0o020000, os.makedev(1, 5))
    refused(await call(client, "read_text_file", path="zero"), "special_file")
    refused(await call(client, "write_file", path="zero", content="x"), "special_file")


async def test_the_workspace_root_cannot_be_deleted_or_moved(client: Client) -> None:
    refused(await call(client, "delete_file", path="."), "invalid_path")
    refused(await call(client, "move_file", source=".", destination="elsewhere"), "invalid_path")
