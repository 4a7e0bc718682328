"""Every `swarm` command on a workspace, against damaged state: one line on stderr and non-zero, never a traceback.

The matrix runs `swarm_cli.main.main` in this process (an exception escaping it fails the test); a few
cases run the real entry point in a child process too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from body_mcp.killswitch import LocalKillSwitch
from body_mcp.state import StatePaths
from swarm_cli.main import main

from .inprocess import swarm_here

ROOT = Path(__file__).resolve().parents[2]

COMMANDS: dict[str, list[str]] = {
    "status": ["status"],
    "audit verify": ["audit", "verify"],
    "audit tail": ["audit", "tail"],
    "audit explain": ["audit", "explain", "act_none"],
    "undo": ["undo", "act_none"],
    "approve": ["approve", "dec_none"],
    "deny": ["deny", "dec_none"],
    "override": ["override", "dec_none"],
    "snapshot create": ["snapshot", "create"],
    "snapshot list": ["snapshot", "list"],
    "snapshot restore": ["snapshot", "restore", "latest"],
    "snapshot restore extras": ["snapshot", "restore", "latest", "--only-extras", "--state-db-to", "{out}"],
    "snapshot drill": ["snapshot", "drill"],
    "kill": ["kill"],
    "resume": ["resume"],
    "init": ["init"],
    "doctor": ["doctor", "--timeout", "15"],
    "body": ["body"],
}
MACHINE_WIDE = {"kill", "resume"}
"""They act on every workspace of the machine and take neither --workspace nor --config."""

DAMAGES = ["garbage_db", "truncated_db", "full_disk", "key_unreadable", "identity_damaged", "config_missing"]
NAMES = {
    "garbage_db": ("state.db",),
    "truncated_db": ("state.db",),
    "full_disk": ("full", "No space"),
    "key_unreadable": ("audit.key",),
    "identity_damaged": ("identity.json",),
    "config_missing": ("missing.toml",),
}
"""A word the one line must hold: the damaged file, or what is wrong with the disk."""

STILL_WORKS = {
    # `init` writes the config (the one named, when missing) and reads none of the workspace's state.
    *(("init", d) for d in ("garbage_db", "truncated_db", "key_unreadable", "identity_damaged", "config_missing")),
    # Listing snapshots and writing a snapshot's state.db elsewhere record nothing: they are how a damaged
    # state is recovered, so they go on without it (with a one-line note).
    *((c, d) for c in ("snapshot list", "snapshot restore extras") for d in DAMAGES if d != "config_missing"),
}

CASES = [(c, d) for c in COMMANDS for d in DAMAGES if not (c in MACHINE_WIDE and d == "config_missing")]


@contextlib.contextmanager
def tiny_tmpfs(path: Path) -> Iterator[None]:
    """A 4 MB tmpfs at `path` (needs root: CI runs as root)."""
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(path)], check=False)
    if mounted.returncode != 0:
        pytest.skip("a full disk is simulated with a tmpfs, and mounting one needs root")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> None:
    # Unbuffered: a buffered file's close would write again what a short write left in its buffer, and fail (the
    # space left is seldom a multiple of the chunk).
    with open(directory / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * (64 << 10))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    os.sync()


def damage(kind: str, paths: StatePaths) -> None:
    if kind == "garbage_db":
        paths.db.write_bytes(os.urandom(3000))
    elif kind == "truncated_db":
        with sqlite3.connect(paths.db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        os.truncate(paths.db, paths.db.stat().st_size // 2)
    elif kind == "full_disk":
        fill(paths.home)
    elif kind == "key_unreadable":
        paths.audit_key.unlink()
        paths.audit_key.mkdir()  # (a mode-000 file is no obstacle to root)
    elif kind == "identity_damaged":
        paths.identity.write_text("{not json")
    if kind in ("garbage_db", "truncated_db"):
        for suffix in ("-wal", "-shm"):
            Path(f"{paths.db}{suffix}").unlink(missing_ok=True)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SWARM_CONFIG", "SWARM_BRAIN_URL", "SWARM_TOKEN", "SWARM_DEBUG", "SWARM_AGENT"):
        monkeypatch.delenv(name, raising=False)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(("command", "kind"), CASES)
def test_a_command_on_damaged_state_says_why_in_one_line(
    command: str, kind: str, home: Path, workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with tiny_tmpfs(home) if kind == "full_disk" else contextlib.nullcontext():
        assert run(["snapshot", "create", "--workspace", str(workspace)], capsys)[0] == 0
        paths = StatePaths(home=home, workspace=workspace)
        kill = LocalKillSwitch(paths.kill_file)
        if command == "resume":
            kill.engage(reason="before the damage", by="test")
        damage(kind, paths)

        argv = [arg.format(out=tmp_path / "out.db") for arg in COMMANDS[command]]
        if command not in MACHINE_WIDE:
            argv += ["--workspace", str(workspace)]
        if kind == "config_missing":
            argv += ["--config", str(tmp_path / "missing.toml")]
        code, err = run(argv, capsys)

        lines = err.strip().splitlines()
        assert "Traceback" not in err
        if (command, kind) in STILL_WORKS:
            assert code == 0, err
            assert len(lines) <= 1, err
        else:
            assert code != 0
            assert len(lines) == 1, err
            if command != "doctor":  # (its line counts the problems; each is on stdout with its fix)
                assert any(word in lines[0] for word in NAMES[kind]), lines[0]
        if command == "kill":
            assert kill.state().engaged  # a damaged trail, or a full disk, never stops a kill
        if command == "resume":
            assert not kill.state().engaged


def swarm(*args: str, home: Path, stdout: int = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SWARM_HOME": str(home)}
    for name in ("SWARM_CONFIG", "SWARM_BRAIN_URL", "SWARM_DEBUG"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "swarm_cli", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("kind", ["garbage_db", "identity_damaged"])
def test_the_real_entry_point_says_why_in_one_line_too(kind: str, home: Path, workspace: Path) -> None:
    made = swarm_here("status", "--workspace", str(workspace), home=home)  # (the state to damage, made in this process)
    assert made.returncode == 0, made.stderr
    damage(kind, StatePaths(home=home, workspace=workspace))

    for argv in (["status"], ["body"]):
        result = swarm(*argv, "--workspace", str(workspace), home=home)
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr


@pytest.mark.usefixtures("clean_env")
def test_an_unexpected_error_is_one_line_too(
    home: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr("body_mcp.admin.Admin.status", broken)
    code, err = run(["status", "--workspace", str(workspace)], capsys)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "RuntimeError" in err

    monkeypatch.setenv("SWARM_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["status", "--workspace", str(workspace)])


def test_a_reader_that_goes_away_ends_the_command_quietly(home: Path, workspace: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = swarm("status", "--workspace", str(workspace), home=home, stdout=write_end)
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert result.stderr == ""
