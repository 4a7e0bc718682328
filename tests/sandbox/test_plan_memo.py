"""A command's plan is used again only while everything it was made from is unchanged: the caller's key (the
workspace's token among it), every host path it names, and every toolchain fact it used."""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

import pytest

from sandbox import (
    BwrapOverlaySandbox,
    InvalidSandboxSpec,
    PlanMemo,
    ProxyNetwork,
    SandboxSpec,
    WritableMount,
    default_toolchain_paths,
)
from sandbox._bwrap_backend import _Plan  # pyright: ignore[reportPrivateUsage]
from sandbox._host_memo import HOST_FACTS


def test_a_plan_is_used_again_only_while_the_paths_it_read_are_unchanged(tmp_path: Path) -> None:
    memo = PlanMemo[int]()
    named, fact_dir = tmp_path / "named", tmp_path / "fact"
    made: list[int] = []

    def compute() -> int:
        # A toolchain fact it uses: its watched directory counts as read by the plan.
        HOST_FACTS.get(("test-fact", fact_dir), [fact_dir], lambda: 0)
        made.append(1)
        return len(made)

    assert memo.get("k", compute, watched=[named]) == 1
    assert memo.get("k", compute, watched=[named]) == 1 and memo.hits == 1
    assert memo.get("other", compute, watched=[named]) == 2, "another key: planned afresh"
    named.mkdir()
    assert memo.get("k", compute, watched=[named]) == 3, "a named path created"
    assert memo.get("k", compute, watched=[named]) == 3
    fact_dir.mkdir()
    assert memo.get("k", compute, watched=[named]) == 4, "the directory a fact it used came from changed"
    (named / "inside").touch()
    assert memo.get("k", compute, watched=[named]) == 5, "a named directory's entries changed"


def test_a_plan_that_failed_is_not_remembered() -> None:
    memo = PlanMemo[int]()
    attempts: list[int] = []

    def failing() -> int:
        attempts.append(1)
        raise ValueError("no plan")

    for _ in range(2):
        with pytest.raises(ValueError, match="no plan"):
            memo.get("k", failing)
    assert len(attempts) == 2 and memo.hits == 0


@pytest.fixture
def backend(tmp_path: Path) -> BwrapOverlaySandbox:
    staging = tmp_path / "staging"
    staging.mkdir()
    return BwrapOverlaySandbox(staging_root=staging)


def _spec(workspace: Path, tools: Path, **changes: object) -> SandboxSpec:
    spec = SandboxSpec(
        workspace=workspace,
        argv=["true"],
        env={"PATH": "/usr/bin:/bin", "LANG": "C"},
        toolchain_paths=[*default_toolchain_paths(), tools],
        hidden_paths=[".env"],
        extra_hidden_abs=[tools / "secret"],
        workspace_state=1,
    )
    return dataclasses.replace(spec, **changes)  # pyright: ignore[reportArgumentType]


def test_the_sandbox_plans_again_on_each_kind_of_change_and_never_across_one(
    tmp_path: Path, backend: BwrapOverlaySandbox
) -> None:
    workspace, tools = tmp_path / "ws", tmp_path / "tools"
    workspace.mkdir()
    tools.mkdir()
    (workspace / ".env").write_text("k")
    (workspace / "sub").mkdir()
    spec = _spec(workspace, tools)
    first = backend._plan(spec)  # pyright: ignore[reportPrivateUsage]
    again = backend._plan(dataclasses.replace(spec, argv=["other", "command"], timeout_s=5))  # pyright: ignore[reportPrivateUsage]
    assert again is first and backend.plans.hits == 1, "only the command changed: the same plan"

    def plan(**changes: object) -> _Plan:
        spec_now = _spec(workspace, tools, **changes)
        return backend._plan(spec_now)  # pyright: ignore[reportPrivateUsage]

    # Each kind of change plans afresh, and the plan says what changed.
    by_token = plan(workspace_state=2)
    assert by_token is not first
    assert plan(workspace_state=2) is by_token
    by_env = plan(workspace_state=2, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    assert by_env is not by_token and by_env.env["LANG"] == "C.UTF-8"
    by_cwd = plan(workspace_state=2, cwd="sub")
    assert by_cwd.cwd == workspace / "sub"
    by_hidden = plan(workspace_state=2, hidden_paths=[".env", "sub"])
    assert workspace / "sub" in [t.path for t in by_hidden.hidden]
    # A host path it reads, changed with the same key: the secret file created under an exposed toolchain path.
    assert tools / "secret" not in [t.path for t in by_token.hidden]
    (tools / "secret").write_text("s")
    after_secret = plan(workspace_state=2)
    assert after_secret is not by_token
    assert tools / "secret" in [t.path for t in after_secret.hidden]
    # A writable mount's source replaced under the same key.
    source = tmp_path / "env-dir"
    source.mkdir()
    mounts = [WritableMount(source=source, target=workspace / ".venv")]
    with_mount = plan(workspace_state=2, writable_mounts=mounts)
    assert plan(workspace_state=2, writable_mounts=mounts) is with_mount
    source.rmdir()
    with pytest.raises(InvalidSandboxSpec, match="writable mount source"):
        plan(workspace_state=2, writable_mounts=mounts)


def test_without_a_workspace_token_or_with_a_proxy_nothing_is_remembered(
    tmp_path: Path, backend: BwrapOverlaySandbox
) -> None:
    workspace, tools = tmp_path / "ws", tmp_path / "tools"
    workspace.mkdir()
    tools.mkdir()
    spec = _spec(workspace, tools, workspace_state=None)
    assert backend._plan(spec) is not backend._plan(spec)  # pyright: ignore[reportPrivateUsage]
    socket_path = tmp_path / "proxy.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(os.fspath(socket_path))
        proxied = _spec(workspace, tools, network=ProxyNetwork(socket_path=socket_path))
        assert backend._plan(proxied) is not backend._plan(proxied)  # pyright: ignore[reportPrivateUsage]
    assert backend.plans.hits == 0 and backend.plans.misses == 0
