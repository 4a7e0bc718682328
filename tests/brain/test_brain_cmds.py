"""`swarm brain token create` and how `swarm brain serve` resolves its settings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from brain_server import ConfigError, hash_token
from swarm_cli.brain_cmds import load_settings, main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "swarm-home"
    monkeypatch.setenv("SWARM_HOME", str(path))
    monkeypatch.delenv("SWARM_CONFIG", raising=False)
    return path


def test_token_create_prints_the_token_alone_and_stores_only_its_hash(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["brain", "token", "create", "--role", "captain", "--label", "alice"]) == 0
    out = capsys.readouterr().out
    token = out.strip()
    assert out == token + "\n" and token.startswith("swb_")
    conn = sqlite3.connect(home / "brain.db")
    try:
        rows = conn.execute("SELECT role, label, token_hash FROM tokens").fetchall()
    finally:
        conn.close()
    assert rows == [("captain", "alice", hash_token(token))]


def test_token_create_takes_a_db_path_and_refuses_an_unknown_role(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "elsewhere" / "b.db"
    assert main(["brain", "token", "create", "--role", "body", "--db", str(db)]) == 0
    assert db.exists() and not (home / "brain.db").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["brain", "token", "create", "--role", "admin"])
    assert exit_info.value.code != 0


def test_settings_come_from_the_brain_section_then_flags(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "swarm.toml"
    config.write_text('[brain]\nport = 9000\nlease_s = 60\nhost = "0.0.0.0"\n\n[limits]\ncalls_per_minute = 5\n')
    settings = load_settings(config=str(config), port=9100)
    assert (settings.host, settings.port, settings.lease_s) == ("0.0.0.0", 9100, 60)
    assert settings.db == (home / "brain.db").resolve()
    assert load_settings(config=None).port == 8765


def test_an_unknown_or_bad_brain_key_is_an_error_naming_it(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "swarm.toml"
    config.write_text("[brain]\nprot = 9000\n")
    with pytest.raises(ConfigError, match=r"brain\.prot"):
        load_settings(config=str(config))
    config.write_text("[brain]\nlease_s = -1\n")
    with pytest.raises(ConfigError, match=r"brain\.lease_s"):
        load_settings(config=str(config))
    assert main(["brain", "serve", "--config", str(config)]) == 1
    assert capsys.readouterr().err.startswith("swarm: ")
