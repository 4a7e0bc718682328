"""`swarm brain serve` on a database it cannot use: it exits non-zero with one line on stderr, at start and while
serving, so that systemd's `Restart=always` starts it again (never a traceback, never a process that neither serves
nor exits). Real processes, real damaged files; the other commands on such a file (`swarm brain token …`), whose
process is not what is tested, run in the test's process (`tests/cli/inprocess.py`: the same entry point)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.abc import Process

from brain_server import SqliteStateEngine, issue_token
from brain_server.exceptions import StateBroken
from tests.cli.inprocess import swarm_in_process

from .helpers import audit_chain, batch

pytestmark = pytest.mark.anyio

EXIT_WITHIN_S = 20


async def real_brain_db(path: Path, *, events: int = 600) -> dict[str, str]:
    """A brain database with tokens and enough audit events to span many pages, closed cleanly (no WAL left)."""
    state = await SqliteStateEngine.open(path)
    try:
        tokens = {
            role: await issue_token(state, role=role, label=role, at=datetime.now(UTC)) for role in ("body", "captain")
        }
        chain = audit_chain("body-a", events)
        for start in range(0, events, 200):
            await state.append_audit("body-a", chain[start : start + 200])
    finally:
        await state.close()
    assert not Path(f"{path}-wal").exists()
    return tokens


def garbage(db: Path) -> None:
    db.write_bytes(os.urandom(db.stat().st_size))


def truncated(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2)


def emptied(db: Path) -> None:
    os.truncate(db, 0)


def flipped(db: Path) -> None:
    """Bytes overwritten in the middle of the file: a damaged b-tree page, the header intact."""
    size = db.stat().st_size
    with db.open("r+b") as fh:
        fh.seek(size // 2 - (size // 2) % 4096)
        fh.write(b"\xa5" * 4096)


def a_directory(db: Path) -> None:
    db.unlink()
    db.mkdir()


DAMAGE: dict[str, Callable[[Path], None]] = {
    "not_sqlite": garbage,
    "truncated": truncated,
    "empty": emptied,
    "damaged_page": flipped,
    "a_directory": a_directory,
}


def swarm(*args: str) -> list[str]:
    return [sys.executable, "-m", "swarm_cli", *args]


def env_for(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SWARM_CONFIG", "SWARM_BRAIN_URL", "SWARM_TOKEN")}
    env["SWARM_HOME"] = str(home)
    return env


def assert_one_line_reason(stderr: str) -> None:
    lines = stderr.splitlines()
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("swarm: "), stderr


async def run_to_exit(home: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """The real CLI; a process still running after `EXIT_WITHIN_S` is the hang this guards against (a failure)."""
    with anyio.fail_after(EXIT_WITHIN_S):
        return await anyio.run_process(swarm(*args), env=env_for(home), check=False)


async def run_here(home: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`run_to_exit` in the test's process, minus a new Python's start."""
    with anyio.fail_after(EXIT_WITHIN_S):
        done = await swarm_in_process(args, env_for(home))
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.encode(), done.stderr.encode())


def decoded(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stderr.decode()


@pytest.mark.parametrize("damage", sorted(DAMAGE))
async def test_serve_exits_at_start_with_one_line_for_a_database_it_cannot_use(damage: str, tmp_path: Path) -> None:
    db = tmp_path / "brain.db"
    await real_brain_db(db)
    DAMAGE[damage](db)
    served = await run_to_exit(tmp_path / "home", "brain", "serve", "--db", str(db), "--port", "0")
    assert served.returncode == 1
    assert_one_line_reason(decoded(served))
    listed = await run_here(tmp_path / "home", "brain", "token", "list", "--db", str(db))
    assert listed.returncode == 1
    assert_one_line_reason(decoded(listed))
    if damage == "empty":
        assert db.stat().st_size == 0, "an empty file is not taken for a new database"


async def test_serve_exits_with_one_line_when_the_database_directory_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    served = await run_to_exit(tmp_path / "home", "brain", "serve", "--db", str(tmp_path / "a-file" / "brain.db"))
    assert served.returncode == 1
    assert_one_line_reason(decoded(served))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
async def test_serve_exits_with_one_line_for_an_unreadable_database(tmp_path: Path) -> None:
    db = tmp_path / "brain.db"
    await real_brain_db(db)
    db.chmod(0)
    served = await run_to_exit(tmp_path / "home", "brain", "serve", "--db", str(db), "--port", "0")
    assert served.returncode == 1
    assert_one_line_reason(decoded(served))


LIMIT_FILES = """
import os, resource, signal, sys
limit = int(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
os.execv(sys.argv[2], sys.argv[2:])
"""


@dataclass
class Serving:
    process: Process
    url: str
    stderr: list[str] = field(default_factory=list[str])


@asynccontextmanager
async def serving(home: Path, db: Path, *, max_file_bytes: int | None = None) -> AsyncGenerator[Serving]:
    """`swarm brain serve` in its own process, once it listens; with `max_file_bytes`, no file it writes may grow
    past that (RLIMIT_FSIZE, SIGXFSZ ignored: a write there fails as on a full disk)."""

    argv = swarm("brain", "serve", "--db", str(db), "--port", "0")
    if max_file_bytes is not None:
        # (An ignored signal and a resource limit both survive the exec into the CLI.)
        argv = [sys.executable, "-c", LIMIT_FILES, str(max_file_bytes), *argv]
    process = await anyio.open_process(
        argv, env=env_for(home), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    stream = process.stderr
    lines: list[str] = []
    listening = anyio.Event()
    urls: list[str] = []

    async def read_stderr() -> None:
        pending = b""
        async for chunk in stream:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                line = raw.decode()
                lines.append(line)
                if "brain listening on " in line:
                    urls.append(line.split("brain listening on ", 1)[1].split()[0])
                    listening.set()
        if pending:
            lines.append(pending.decode())

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(read_stderr)
            with anyio.fail_after(EXIT_WITHIN_S):
                await listening.wait()
            yield Serving(process=process, url=urls[0], stderr=lines)
            with anyio.fail_after(EXIT_WITHIN_S):
                await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()


def assert_stopped_with_a_reason(brain: Serving) -> None:
    assert brain.process.returncode == 1
    text = "\n".join(brain.stderr)
    assert "Traceback" not in text, text
    assert brain.stderr[-1].startswith("swarm: "), text


async def test_serve_exits_when_its_database_file_is_deleted_while_serving(tmp_path: Path) -> None:
    db = tmp_path / "brain.db"
    await real_brain_db(db, events=10)
    async with serving(tmp_path / "home", db) as brain:
        db.unlink()  # the sweeper reads within a second: the file it holds open is gone
    assert_stopped_with_a_reason(brain)


async def test_serve_exits_when_its_database_is_truncated_while_serving(tmp_path: Path) -> None:
    db = tmp_path / "brain.db"
    tokens = await real_brain_db(db)
    async with serving(tmp_path / "home", db) as brain:
        os.truncate(db, 8192)
        headers = {"Authorization": f"Bearer {tokens['captain']}"}
        async with httpx.AsyncClient(base_url=brain.url, headers=headers, timeout=5) as client:
            # A write moves the WAL on, so the next read goes to the (now missing) pages of the file; the sweeper
            # may find out first, and then there is no brain left to ask.
            with contextlib.suppress(httpx.TransportError):
                answers = [(await client.post("/v1/tasks", json={"title": "t"})).status_code]
                answers.append((await client.get("/v1/status")).status_code)
                assert 503 in answers, answers
    assert_stopped_with_a_reason(brain)


async def test_serve_exits_when_its_disk_fills_while_serving(tmp_path: Path) -> None:
    db = tmp_path / "brain.db"
    tokens = await real_brain_db(db, events=0)
    events = audit_chain("body-a", 4000)
    async with serving(tmp_path / "home", db, max_file_bytes=db.stat().st_size + 512 * 1024) as brain:
        headers = {"Authorization": f"Bearer {tokens['body']}"}
        status = 200
        async with httpx.AsyncClient(base_url=brain.url, headers=headers, timeout=5) as client:
            for start in range(0, len(events), 200):
                try:
                    response = await client.post("/v1/audit", json=batch("body-a", events[start : start + 200]))
                except httpx.TransportError:
                    break  # stopped between two batches
                status = response.status_code
                if status != 200:
                    break
        assert status == 503, "the brain took every write although no file may grow past the limit"
    assert_stopped_with_a_reason(brain)


async def test_a_point_read_of_a_malformed_database_is_state_broken_not_a_raw_sqlite_error(tmp_path: Path) -> None:
    """Was a traceback in the brain's log (seen once in CI: the sweeper's point read met the truncated file before
    the daemon stopped, and logged "sweep failed; retrying" with sqlite3.DatabaseError): a point read caught only
    `OperationalError`, and a malformed file raises its parent, `DatabaseError`. Now it is `StateBroken`, as every
    other read's is, and the engine is marked broken (the daemon stops with one line)."""
    db = tmp_path / "brain.db"
    await real_brain_db(db)
    state = await SqliteStateEngine.open(db)
    try:
        garbage(db)  # (the same file, every byte overwritten: the point read's connection has read none of it yet)
        with pytest.raises(StateBroken, match="unusable"):
            await state.token_by_hash("0" * 64)
        assert state.broken is not None
    finally:
        with contextlib.suppress(Exception):
            await state.close()
