"""Review of issue 15 (item 11): `--db` naming another application's SQLite file (a typo) stops the brain in one line,
and nothing is written into that file; an empty SQLite file (no tables) is still a new brain."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from .test_damaged_database import assert_one_line_reason, decoded, run_here, run_to_exit

pytestmark = pytest.mark.anyio


def tables(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM sqlite_master ORDER BY name")]


@pytest.mark.parametrize("argv", [["brain", "serve", "--port", "0"], ["brain", "token", "create", "--role", "body"]])
async def test_a_database_of_another_application_is_refused_and_left_as_it_was(argv: list[str], tmp_path: Path) -> None:
    db = tmp_path / "notes.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        conn.execute("INSERT INTO notes (text) VALUES ('keep me')")
    before = db.read_bytes()
    run = run_to_exit if argv[1] == "serve" else run_here  # (serve's own process is what is tested)
    result = await run(tmp_path / "home", *argv, "--db", str(db))
    assert result.returncode == 1
    assert_one_line_reason(decoded(result))
    assert "not a brain" in decoded(result) and "notes" in decoded(result), decoded(result)
    assert tables(db) == ["notes"] and db.read_bytes() == before
