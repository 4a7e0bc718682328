"""The wake-up side of the real `swarm` CLI: `swarm discord register` and `swarm doctor`'s wake checks against a fake
Discord on 127.0.0.1 (served in the test's event loop), and `swarm brain serve`'s refusal to start with a secret it
cannot read. Secrets travel as `env:NAME` references and never reach the output. `brain serve`, a registration and a
doctor run as subprocesses; the other cases run the same entry point in the test's process (`tests/cli/inprocess.py`:
no new Python to start for each)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.cli.inprocess import run_swarm, swarm_in_process
from tests.fakes.discord import APP_ID, BOT_TOKEN, GUILD_ID, WEBHOOK_TOKEN, FakeDiscord
from tests.fakes.serve import serve_app

pytestmark = pytest.mark.anyio

COMMANDS = ["kill-autonomous", "resume", "captain-override", "approve", "deny", "status"]
WAKE_LINE = re.compile(r"^(ok|FAIL)\s+-\s+wake\s+(.*)$")


def _env(home: Path, env: dict[str, str] | None) -> dict[str, str]:
    full = {**os.environ, "SWARM_HOME": str(home), **(env or {})}
    for name in ("SWARM_CONFIG", "SWARM_TEST_UNSET"):
        full.pop(name, None)
    return full


def swarm(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in this process, with no service to talk to (stdin is not a terminal)."""
    return run_swarm(args, _env(home, env))


def swarm_process(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI as a subprocess, with no service to talk to (stdin is not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "swarm_cli", *args],
        capture_output=True,
        text=True,
        env=_env(home, env),
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


async def aswarm(
    *args: str, home: Path, env: dict[str, str] | None = None, process: bool = False
) -> subprocess.CompletedProcess[str]:
    """The CLI, awaited, so that a fake served in this event loop keeps answering it: in this process, or (`process`)
    as a subprocess."""
    with anyio.fail_after(60):
        if not process:
            return await swarm_in_process(args, _env(home, env))
        done = await anyio.run_process(
            [sys.executable, "-m", "swarm_cli", *args], env=_env(home, env), stdin=subprocess.DEVNULL, check=False
        )
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("swarm: ")
    return lines[0]


def write_config(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def public_key_hex() -> str:
    return Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()


# --- swarm discord register ------------------------------------------------------------------


def discord_toml(api_base: str, *, guild_id: str = "") -> str:
    return (
        "[discord]\n"
        f'application_id = "{APP_ID}"\n'
        'bot_token = "env:SWARM_TEST_BOT_TOKEN"\n'
        f'api_base = "{api_base}"\n'
        f'guild_id = "{guild_id}"\n'
    )


@pytest.mark.parametrize("guild_id", ["", GUILD_ID], ids=["global", "guild"])
async def test_discord_register_installs_every_command_and_names_them(
    home: Path, tmp_path: Path, guild_id: str
) -> None:
    discord = FakeDiscord()
    async with serve_app(discord) as base:
        config = write_config(tmp_path / "swarm.toml", discord_toml(FakeDiscord.api_base(base), guild_id=guild_id))
        result = await aswarm(
            "discord", "register", "--config", config, home=home, env={"SWARM_TEST_BOT_TOKEN": BOT_TOKEN}, process=True
        )

    assert result.returncode == 0, result.stderr
    scope = guild_id or "global"
    assert list(discord.commands) == [scope]
    assert [command["name"] for command in discord.commands[scope]] == COMMANDS
    (request,) = discord.requests
    assert request.method == "PUT" and request.headers["authorization"] == f"Bot {BOT_TOKEN}"
    assert all(f"/{name}" in result.stdout for name in COMMANDS), result.stdout
    assert (f"server {guild_id}" if guild_id else "global") in result.stdout
    assert BOT_TOKEN not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "guild_id,status", [("", "401"), ("1190000000000000099", "403")], ids=["wrong-token", "guild-not-joined"]
)
async def test_discord_register_refused_by_discord_is_one_line_without_the_token(
    home: Path, tmp_path: Path, guild_id: str, status: str
) -> None:
    wrong = "MTE4wrong.Gtoken.this-value-must-never-be-printed-0123456789"
    token = wrong if status == "401" else BOT_TOKEN
    discord = FakeDiscord()
    async with serve_app(discord) as base:
        config = write_config(tmp_path / "swarm.toml", discord_toml(FakeDiscord.api_base(base), guild_id=guild_id))
        result = await aswarm("discord", "register", "--config", config, home=home, env={"SWARM_TEST_BOT_TOKEN": token})

    line = one_line_error(result)
    assert status in line and "bot_token" in line and "application_id" in line
    assert token not in result.stdout + result.stderr
    assert len(discord.requests) == 1 and discord.commands == {}


@pytest.mark.parametrize(
    "section",
    [
        'bot_token = "env:SWARM_TEST_BOT_TOKEN"\n',
        f'application_id = "{APP_ID}"\n',
        "",
    ],
    ids=["no-application-id", "no-bot-token", "neither"],
)
def test_discord_register_without_its_keys_names_them(home: Path, tmp_path: Path, section: str) -> None:
    config = write_config(tmp_path / "swarm.toml", "[discord]\n" + section)
    result = swarm("discord", "register", "--config", config, home=home, env={"SWARM_TEST_BOT_TOKEN": BOT_TOKEN})
    line = one_line_error(result)
    assert "application_id" in line and "bot_token" in line
    assert BOT_TOKEN not in line


def test_discord_register_with_an_unset_env_secret_names_the_reference(home: Path, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "swarm.toml", f'[discord]\napplication_id = "{APP_ID}"\nbot_token = "env:SWARM_TEST_UNSET"\n'
    )
    assert "env:SWARM_TEST_UNSET" in one_line_error(swarm("discord", "register", "--config", config, home=home))


@pytest.mark.parametrize(
    "key,literal",
    [("bot_token", BOT_TOKEN), ("bot_token", "abc"), ("webhook_url", FakeDiscord.webhook_url("https://discord.com"))],
    ids=["bot-token", "short", "webhook-url"],
)
@pytest.mark.parametrize(
    "command",
    [("discord", "register"), ("brain", "serve", "--port", "0"), ("doctor", "--timeout", "5")],
    ids=["register", "serve", "doctor"],
)
def test_a_secret_written_in_swarm_toml_is_refused_by_key_without_echoing_it(
    home: Path, tmp_path: Path, workspace: Path, key: str, literal: str, command: tuple[str, ...]
) -> None:
    config = write_config(tmp_path / "swarm.toml", f'[discord]\napplication_id = "{APP_ID}"\n{key} = "{literal}"\n')
    extra = ("--workspace", str(workspace)) if command[0] == "doctor" else ()
    run = swarm_process if command[0] == "brain" else swarm  # (a brain that served instead would never return here)
    result = run(*command, *extra, "--config", config, home=home)
    line = one_line_error(result)
    assert f"discord.{key}" in line and "env:NAME" in line
    # The line quotes the key, never its value: `"abc"` would otherwise appear quoted.
    assert f"'{literal}'" not in line and f'"{literal}"' not in line
    for secret in (literal, BOT_TOKEN, WEBHOOK_TOKEN) if len(literal) > 3 else (BOT_TOKEN, WEBHOOK_TOKEN):
        assert secret not in result.stdout + result.stderr
    assert not (home / "brain.db").exists()


# --- swarm doctor ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WakeLine:
    ok: bool
    message: str
    fix: str | None


def wake_lines(stdout: str) -> list[WakeLine]:
    """The doctor's `wake` findings, each with the `fix:` line that follows it."""
    found: list[WakeLine] = []
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if (match := WAKE_LINE.match(line)) is None:
            continue
        after = lines[i + 1].strip() if i + 1 < len(lines) else ""
        fix = after.removeprefix("fix: ") if after.startswith("fix: ") else None
        found.append(WakeLine(ok=match[1] == "ok", message=match[2], fix=fix))
    return found


async def doctor(
    home: Path, workspace: Path, config: str | None, env: dict[str, str] | None = None, *, process: bool = False
) -> subprocess.CompletedProcess[str]:
    args = ["doctor", "--workspace", str(workspace), "--timeout", "20"]
    result = await aswarm(*args, *(["--config", config] if config else []), home=home, env=env, process=process)
    # No IDE is set up in these workspaces, so the doctor always finds that problem: exit 1.
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("swarm: doctor found")
    return result


def discord_only_toml() -> str:
    """A ladder of Discord alone, answerable (public key, public URL): the webhook is the only thing left to check."""
    return (
        '[brain]\npublic_url = "https://brain.example.com"\n'
        '[escalation]\nlevels = [{after_s = 0, targets = ["discord"]}]\n'
        '[discord]\nwebhook_url = "env:SWARM_TEST_WEBHOOK"\n'
        f'public_key = "{public_key_hex()}"\napplication_id = "{APP_ID}"\ncaptain_ids = ["100"]\n'
    )


async def test_doctor_with_no_wake_channel_says_nobody_is_paged_in_an_ok_line(home: Path, workspace: Path) -> None:
    (line,) = wake_lines((await doctor(home, workspace, None, process=True)).stdout)
    assert line.ok and "no wake-up channel" in line.message


@pytest.mark.parametrize("app_owned", [True, False], ids=["app-webhook", "user-webhook"])
async def test_doctor_tells_a_user_created_webhook_from_an_application_one_without_paging(
    home: Path, workspace: Path, tmp_path: Path, app_owned: bool
) -> None:
    discord = FakeDiscord()
    if not app_owned:
        discord.webhook_application_id = None
    config = write_config(tmp_path / "swarm.toml", discord_only_toml())
    async with serve_app(discord) as base:
        result = await doctor(home, workspace, config, env={"SWARM_TEST_WEBHOOK": FakeDiscord.webhook_url(base)})

    (line,) = wake_lines(result.stdout)
    if app_owned:
        assert line.ok and APP_ID in line.message and line.fix is None
    else:
        assert not line.ok and "created by a user" in line.message and "buttons" in line.message
        assert line.fix is not None and "POST /channels/" in line.fix and "webhook_url" in line.fix
    assert WEBHOOK_TOKEN not in result.stdout + result.stderr
    assert [r.method for r in discord.requests] == ["GET"]  # looked at, nothing sent: the doctor pages nobody
    assert discord.messages == []


async def test_doctor_fails_a_webhook_owned_by_another_application(home: Path, workspace: Path, tmp_path: Path) -> None:
    discord = FakeDiscord()
    discord.webhook_application_id = "1199999999999999999"
    config = write_config(tmp_path / "swarm.toml", discord_only_toml())
    async with serve_app(discord) as base:
        result = await doctor(home, workspace, config, env={"SWARM_TEST_WEBHOOK": FakeDiscord.webhook_url(base)})
    (line,) = wake_lines(result.stdout)
    assert not line.ok and APP_ID in line.message and line.fix


async def test_doctor_names_an_unset_env_secret_and_shows_no_secret_value(
    home: Path, workspace: Path, tmp_path: Path
) -> None:
    text = (
        '[brain]\npublic_url = "https://brain.example.com"\n'
        '[escalation]\nlevels = [{after_s = 0, targets = ["discord"]}, {after_s = 300, targets = ["sms"]}]\n'
        '[discord]\nwebhook_url = "env:SWARM_TEST_WEBHOOK"\n'
        '[twilio]\naccount_sid = "AC0123456789abcdef0123456789abcdef"\nauth_token = "env:SWARM_TEST_UNSET"\n'
        'from_number = "+15557654321"\nto = ["+15550001111"]\n'
    )
    config = write_config(tmp_path / "swarm.toml", text)
    webhook = f"https://discord.invalid/api/webhooks/1/{WEBHOOK_TOKEN}"
    result = await doctor(home, workspace, config, env={"SWARM_TEST_WEBHOOK": webhook})
    (line,) = wake_lines(result.stdout)
    assert not line.ok and "env:SWARM_TEST_UNSET" in line.message and line.fix
    assert WEBHOOK_TOKEN not in result.stdout + result.stderr


def ladder_without_twilio(tmp_path: Path) -> str:
    text = (
        '[brain]\npublic_url = "https://brain.example.com"\n'
        '[escalation]\nlevels = [{after_s = 0, targets = ["ntfy"]}, {after_s = 300, targets = ["sms"]}]\n'
        f'[discord]\npublic_key = "{public_key_hex()}"\napplication_id = "{APP_ID}"\nuser_ids = ["200"]\n'
        '[ntfy]\nserver = "https://ntfy.invalid"\ntopic = "env:SWARM_TEST_TOPIC"\n'
    )
    return write_config(tmp_path / "swarm.toml", text)


async def test_doctor_fails_a_ladder_level_whose_channel_is_not_configured(
    home: Path, workspace: Path, tmp_path: Path
) -> None:
    result = await doctor(home, workspace, ladder_without_twilio(tmp_path), env={"SWARM_TEST_TOPIC": "swarm-ops-7f3a"})
    (line,) = wake_lines(result.stdout)
    assert not line.ok and "'sms'" in line.message and "[twilio]" in line.message and line.fix
    assert "swarm-ops-7f3a" not in result.stdout + result.stderr


async def test_doctor_reports_wake_problems_on_stdout_only(home: Path, workspace: Path, tmp_path: Path) -> None:
    result = await doctor(home, workspace, ladder_without_twilio(tmp_path), env={"SWARM_TEST_TOPIC": "swarm-ops-7f3a"})
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


async def test_doctor_names_settings_that_stop_answers_coming_back(home: Path, workspace: Path, tmp_path: Path) -> None:
    text = (
        '[brain]\npublic_url = "https://brain.example.com"\n'
        '[escalation]\nlevels = [{after_s = 0, targets = ["ntfy"]}]\n'
        f'[discord]\npublic_key = "{public_key_hex()}"\n'
        '[twilio]\naccount_sid = "AC0123456789abcdef0123456789abcdef"\n'
        '[ntfy]\nserver = "https://ntfy.invalid"\ntopic = "env:SWARM_TEST_TOPIC"\n'
    )
    config = write_config(tmp_path / "swarm.toml", text)
    result = await doctor(home, workspace, config, env={"SWARM_TEST_TOPIC": "swarm-ops-7f3a"})
    messages = [line.message for line in wake_lines(result.stdout) if not line.ok]
    assert len(messages) == 3, result.stdout
    assert "[twilio] auth_token is empty" in messages[0]
    assert "nobody may press a button" in messages[1]
    assert "[discord] application_id is empty" in messages[2]


# --- swarm brain serve -----------------------------------------------------------------------


def serve_with_unset_secret(home: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    config = write_config(tmp_path / "swarm.toml", '[discord]\nwebhook_url = "env:SWARM_TEST_UNSET"\n')
    args = ("--host", "127.0.0.1", "--port", "0", "--db", str(tmp_path / "brain.db"), "--config", config)
    # `subprocess.run`'s timeout fails the test if the brain starts serving instead of refusing.
    return swarm_process("brain", "serve", *args, home=home)


def test_brain_serve_refuses_to_start_with_an_unset_env_secret_and_names_it(home: Path, tmp_path: Path) -> None:
    result = serve_with_unset_secret(home, tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("swarm: ") and "env:SWARM_TEST_UNSET" in last
    assert "listening" not in result.stderr


def test_brain_serve_with_an_unset_env_secret_prints_only_the_reason(home: Path, tmp_path: Path) -> None:
    result = serve_with_unset_secret(home, tmp_path)
    assert "env:SWARM_TEST_UNSET" in one_line_error(result)


def test_brain_serve_refuses_a_ladder_naming_an_unknown_channel_and_names_the_key(home: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "swarm.toml", '[escalation]\nlevels = [{after_s = 0, targets = ["pager"]}]\n')
    args = ("--host", "127.0.0.1", "--port", "0", "--db", str(tmp_path / "brain.db"), "--config", config)
    line = one_line_error(swarm_process("brain", "serve", *args, home=home))
    assert "[escalation] levels" in line and "'pager'" in line
    assert not (tmp_path / "brain.db").exists()


async def test_doctor_fails_a_ladder_naming_an_unknown_channel(home: Path, workspace: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "swarm.toml", '[escalation]\nlevels = [{after_s = 0, targets = ["pager"]}]\n')
    (line,) = wake_lines((await doctor(home, workspace, config)).stdout)
    assert not line.ok and "[escalation] levels" in line.message and line.fix
