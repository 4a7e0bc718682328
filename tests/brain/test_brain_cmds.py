"""`swarm brain token create|list|revoke` and how `swarm brain serve` resolves its settings."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from body_mcp.exceptions import ConfigError as CliConfigError
from brain_server import Brain, ConfigError, LogEntry, MemoryStateEngine, SqliteStateEngine, hash_token
from brain_server.auth import Principal
from brain_server.state import sqlite_url
from shared_protocol import DecisionRequest, Impact
from swarm_cli._context import load
from swarm_cli.brain_cmds import load_settings, main, serve_settings


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


def test_token_create_makes_a_metrics_token_bound_to_no_agent(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--role metrics`: a scraper's read-only token (GET /metrics only, see test_review20_metrics); an agent cannot
    hold one (nothing written)."""
    assert main(["brain", "token", "create", "--role", "metrics", "--label", "prometheus"]) == 0
    token = capsys.readouterr().out.strip()
    assert main(["brain", "token", "create", "--role", "metrics", "--agent", "w1"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    conn = sqlite3.connect(home / "brain.db")
    try:
        rows = conn.execute("SELECT role, label, agent, token_hash FROM tokens").fetchall()
    finally:
        conn.close()
    assert rows == [("metrics", "prometheus", None, hash_token(token))]


def test_token_create_pair_prints_a_pairing_secret_and_stores_only_its_hash(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--pair`: a second stdout line, the pairing secret its body must prove with its key (see
    test_review17c_keys); only its hash is stored. Bad input: --pair on a token that registers no body is one line
    on stderr, exit 1, nothing written."""
    assert main(["brain", "token", "create", "--role", "body", "--agent", "w1", "--label", "w1", "--pair"]) == 0
    captured = capsys.readouterr()
    token, pairing = captured.out.splitlines()
    assert token.startswith("swb_") and pairing.startswith("swp_") and "pairing secret" in captured.err
    for role in ("captain", "reviewer"):
        assert main(["brain", "token", "create", "--role", role, "--agent", "w2", "--pair"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--pair" in err[0]
    conn = sqlite3.connect(home / "brain.db")
    try:
        rows = conn.execute("SELECT role, agent, token_hash, pairing_hash FROM tokens").fetchall()
    finally:
        conn.close()
    assert rows == [("body", "w1", hash_token(token), hash_token(pairing))]


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
    config.write_text(
        '[brain]\nport = 9000\nlease_s = 60\nhost = "0.0.0.0"\naudit_retention_days = 30\n'
        "\n[limits]\ncalls_per_minute = 5\n"
    )
    settings = load_settings(config=str(config), port=9100)
    assert (settings.host, settings.port, settings.lease_s) == ("0.0.0.0", 9100, 60)
    assert settings.audit_retention_days == 30
    assert settings.database_url == sqlite_url((home / "brain.db").resolve())
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
    config.write_text("[brain]\naudit_retention_days = 0\n")
    with pytest.raises(ConfigError, match=r"'brain\.audit_retention_days': .*greater than or equal to 1"):
        load_settings(config=str(config))
    config.write_text("[brain]\nlease_s = -1\n")
    assert main(["brain", "serve", "--config", str(config)]) == 1
    assert capsys.readouterr().err.startswith("swarm: ")


def test_a_database_url_in_the_config_chooses_where_the_tokens_go(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "elsewhere" / "b.db"
    config = tmp_path / "swarm.toml"
    config.write_text(f'[brain]\ndatabase_url = "{sqlite_url(db)}"\n')
    assert load_settings(config=str(config)).database_url == sqlite_url(db)
    assert main(["brain", "token", "create", "--role", "body", "--config", str(config)]) == 0
    assert token_rows(db)[0][1] == "body" and not (home / "brain.db").exists()
    capsys.readouterr()
    assert main(["brain", "token", "list", "--config", str(config)]) == 0
    assert capsys.readouterr().out.count("\n") == 1


def test_the_db_flag_is_short_for_a_sqlite_url_and_overrides_the_config(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "swarm.toml"
    config.write_text('[brain]\ndatabase_url = "memory://"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings(config=str(config), db="here/b.db").database_url == sqlite_url(tmp_path / "here" / "b.db")
    assert load_settings(config=str(config)).database_url == "memory://"


def test_the_older_db_key_still_names_a_sqlite_file_but_not_together_with_a_database_url(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "old" / "brain.db"
    config = tmp_path / "swarm.toml"
    config.write_text(f'[brain]\ndb = "{db}"\n')
    assert load_settings(config=str(config)).database_url == sqlite_url(db)
    serve_settings(config=str(config))  # the whole file, through the shared schema, takes it too
    config.write_text(f'[brain]\ndb = "{db}"\ndatabase_url = "memory://"\n')
    with pytest.raises(ConfigError, match=r"brain\.database_url"):
        load_settings(config=str(config))
    with pytest.raises(CliConfigError, match=r"brain\.database_url"):
        load(str(config), home)
    assert main(["brain", "token", "create", "--role", "body", "--config", str(config)]) == 1
    assert capsys.readouterr().err.count("\n") == 1 and not db.exists()


BAD_DATABASE_URLS = [
    pytest.param("brain.db", id="not-a-url"),
    pytest.param("ftp://host/brain.db", id="unknown-scheme"),
    pytest.param("sqlite://brain.db", id="relative-path"),
    pytest.param("sqlite:///", id="no-file"),
    pytest.param("memory://brain.db", id="memory-with-a-location"),
]


@pytest.mark.parametrize("url", BAD_DATABASE_URLS)
def test_a_bad_database_url_is_an_error_naming_the_key_at_config_load(home: Path, tmp_path: Path, url: str) -> None:
    config = tmp_path / "swarm.toml"
    config.write_text(f'[brain]\ndatabase_url = "{url}"\n')
    with pytest.raises(ConfigError, match=r"brain\.database_url"):
        load_settings(config=str(config))
    with pytest.raises(ConfigError, match=r"brain\.database_url"):
        serve_settings(config=str(config))
    with pytest.raises(ConfigError, match=r"brain\.database_url"):
        load_settings(config=str(config), db=str(tmp_path / "b.db"))  # --db overrides it, but it is checked


@pytest.mark.parametrize("url", BAD_DATABASE_URLS)
@pytest.mark.parametrize("command", [["serve"], ["token", "create", "--role", "body"], ["token", "list"]])
def test_a_bad_database_url_stops_the_cli_with_one_line_and_creates_nothing(
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    command: list[str],
) -> None:
    config = tmp_path / "swarm.toml"
    config.write_text(f'[brain]\ndatabase_url = "{url}"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["brain", *command, "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("swarm: ") and err.count("\n") == 1 and "brain.database_url" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["swarm.toml"], "nothing created, home included"


def test_token_commands_refuse_a_memory_database_which_would_lose_the_token(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "swarm.toml"
    config.write_text('[brain]\ndatabase_url = "memory://"\n')
    for command in (["create", "--role", "captain"], ["list"], ["revoke", "tok_x"]):
        assert main(["brain", "token", *command, "--config", str(config)]) == 1
        out = capsys.readouterr()
        assert out.out == "" and out.err.startswith("swarm: ") and out.err.count("\n") == 1


def token_rows(db: Path) -> list[tuple[str, str, str | None, str | None]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT id, role, body_id, revoked_at FROM tokens ORDER BY rowid").fetchall()
    finally:
        conn.close()


def log_actions(db: Path) -> list[tuple[str, str, str | None]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT action, reason, target FROM brain_log ORDER BY id").fetchall()
    finally:
        conn.close()


def bind(db: Path, token_id: str, body_id: str) -> None:
    async def run() -> None:
        state = await SqliteStateEngine.open(db)
        try:
            at = datetime.now(UTC)
            await state.bind_token(token_id, body_id, LogEntry(at=at, action="token_bind", by="test"))
        finally:
            await state.close()

    anyio.run(run)


def test_token_list_shows_id_role_label_binding_and_revocation_never_the_token_or_its_hash(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens: list[str] = []
    for role, label in (("body", "laptop one"), ("captain", "alice")):
        assert main(["brain", "token", "create", "--role", role, "--label", label]) == 0
        tokens.append(capsys.readouterr().out.strip())
    db = home / "brain.db"
    (body_id, _, _, _), (captain_id, _, _, _) = token_rows(db)
    bind(db, body_id, "body-a")
    assert main(["brain", "token", "revoke", captain_id]) == 0
    capsys.readouterr()

    assert main(["brain", "token", "list"]) == 0
    out = capsys.readouterr().out
    body_line, captain_line = out.splitlines()
    assert body_line.startswith(f"{body_id}  role=body  created=")
    assert "  body=body-a  revoked=no  label=laptop one" in body_line
    assert captain_line.startswith(f"{captain_id}  role=captain  ")
    assert "  body=-  revoked=20" in captain_line and captain_line.endswith("label=alice")
    for token in tokens:
        assert token not in out and hash_token(token) not in out


def test_token_revoke_refuses_the_token_logs_why_and_a_second_revoke_changes_nothing(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["brain", "token", "create", "--role", "body"]) == 0
    db = home / "brain.db"
    ((token_id, _, _, _),) = token_rows(db)
    assert main(["brain", "token", "revoke", token_id, "--reason", "laptop stolen"]) == 0
    assert token_id in capsys.readouterr().out
    ((_, _, _, revoked_at),) = token_rows(db)
    assert revoked_at is not None
    assert log_actions(db)[-1] == ("token_revoke", "laptop stolen", token_id)

    assert main(["brain", "token", "revoke", token_id, "--reason", "again"]) == 0
    assert "already" in capsys.readouterr().out
    assert token_rows(db) == [(token_id, "body", None, revoked_at)]
    assert [a for a, _, _ in log_actions(db)].count("token_revoke") == 1


def test_token_revoke_of_an_unknown_id_names_it_exits_non_zero_and_changes_nothing(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["brain", "token", "create", "--role", "approver"]) == 0
    db = home / "brain.db"
    rows, log = token_rows(db), log_actions(db)
    capsys.readouterr()
    assert main(["brain", "token", "revoke", "tok_nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("swarm: ") and "tok_nope" in err and err.count("\n") == 1
    assert (token_rows(db), log_actions(db)) == (rows, log)


def test_token_list_and_revoke_take_a_db_path_and_never_create_a_database(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "elsewhere" / "b.db"
    assert main(["brain", "token", "list", "--db", str(db)]) == 1
    assert main(["brain", "token", "revoke", "tok_x", "--db", str(db)]) == 1
    assert not db.exists() and not (home / "brain.db").exists()
    assert main(["brain", "token", "create", "--role", "body", "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["brain", "token", "list", "--db", str(db)]) == 0
    assert capsys.readouterr().out.count("\n") == 1


@pytest.mark.anyio
async def test_the_brain_takes_its_approval_rules_from_limits_and_policy_as_its_bodies_do(
    home: Path, tmp_path: Path
) -> None:
    config = tmp_path / "swarm.toml"
    config.write_text("[policy]\nhuman_above_usd = 5.0\napproval_min_files = 3\n\n[limits]\nmax_files_per_action = 8\n")
    settings, _ = serve_settings(config=str(config))
    rules = settings.thresholds
    assert (rules.human_usd, rules.consensus_files, rules.blocked_files) == (5.0, 3, 8)
    ask = DecisionRequest(
        summary="s", rationale="r", confidence=0.9, agent="a", body_id="body-a", impact=Impact(files=1, usd=10.0)
    )
    who = Principal(token_id="tok_1", role="body", label="body-1")
    async with Brain(settings, state=MemoryStateEngine()).running() as brain:
        assert (await brain.request_decision(who, ask)).needs == "human"  # $10 > $5: a human
    default, _ = serve_settings(config=None)
    async with Brain(default, state=MemoryStateEngine()).running() as brain:
        assert (await brain.request_decision(who, ask)).needs == "none"  # the specification's $50
    config.write_text("[policy]\nhuman_above_usd = -1\n")
    with pytest.raises(CliConfigError, match="human_above_usd"):
        serve_settings(config=str(config))


def test_the_brain_takes_the_age_a_readiness_report_holds_from_rollout(home: Path, tmp_path: Path) -> None:
    assert serve_settings(config=None)[0].readiness_max_age_s == 86_400
    config = tmp_path / "swarm.toml"
    config.write_text("[rollout]\nreadiness_max_age_s = 600\n")
    assert serve_settings(config=str(config))[0].readiness_max_age_s == 600
    config.write_text("[rollout]\nreadiness_max_age_s = 0\n")
    with pytest.raises(CliConfigError, match="readiness_max_age_s"):
        serve_settings(config=str(config))


def test_body_rebind_gives_the_body_to_the_new_token_revokes_the_old_and_logs_why(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(2):
        assert main(["brain", "token", "create", "--role", "body"]) == 0
    db = home / "brain.db"
    (old_id, _, _, _), (new_id, _, _, _) = token_rows(db)
    bind(db, old_id, "body-a")
    capsys.readouterr()
    assert main(["brain", "body", "rebind", "body-a", "--token-id", new_id, "--reason", "new laptop"]) == 0
    out = capsys.readouterr().out
    assert new_id in out and old_id in out
    (_, _, old_body, old_revoked), (_, _, new_body, new_revoked) = token_rows(db)
    assert (old_body, new_body, new_revoked) == ("body-a", "body-a", None) and old_revoked is not None
    assert [(a, t) for a, _, t in log_actions(db)][-2:] == [("token_revoke", old_id), ("body_rebind", "body-a")]


def test_body_rebind_to_a_token_that_cannot_take_the_body_exits_non_zero_and_changes_nothing(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["brain", "token", "create", "--role", "body"]) == 0
    assert main(["brain", "token", "create", "--role", "approver"]) == 0
    db = home / "brain.db"
    (body_id, _, _, _), (approver_id, _, _, _) = token_rows(db)
    bind(db, body_id, "body-a")
    rows, log = token_rows(db), log_actions(db)
    capsys.readouterr()
    for target in (approver_id, "tok_nope"):
        assert main(["brain", "body", "rebind", "body-a", "--token-id", target, "--reason", "r"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("swarm: ") and err.count("\n") == 1
    assert (token_rows(db), log_actions(db)) == (rows, log)
