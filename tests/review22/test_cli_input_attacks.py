"""Review 22: bad input at the `swarm` CLI's entry points gets one line that names the problem, never "this is a
bug", and leaves nothing half-written."""

from __future__ import annotations

import io
import os
import threading
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from swarm_cli.main import main
from tests.cli.inprocess import run_swarm


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    env["SWARM_HOME"] = str(home)
    return env


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


def test_an_id_that_is_not_utf8_is_named_not_called_a_bug(tmp_path: Path, workspace: Path) -> None:
    # `swarm audit explain $'\xff'`: the shell hands Python the byte as a surrogate; SQLite cannot bind it.
    done = run_swarm(["audit", "explain", "act_\udcff", "--workspace", str(workspace)], _env(tmp_path / "home"))
    assert done.returncode == 1
    assert "not valid UTF-8" in done.stderr
    assert "bug" not in done.stderr


def test_a_workspace_path_that_is_not_utf8_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/\xffdir"))
    odd.mkdir()
    home = tmp_path / "home"
    done = run_swarm(["status", "--workspace", str(odd)], _env(home))
    assert done.returncode == 1
    assert "not valid UTF-8" in done.stderr
    assert "bug" not in done.stderr
    assert not (home / "workspaces").exists()


@pytest.mark.parametrize("token", ["é-token", "swb_a\nb", "swb_a b"])
def test_a_token_that_cannot_be_a_header_is_named_before_the_brain_is_asked(tmp_path: Path, token: str) -> None:
    # A refused port: had the token reached the client, the error would say "unreachable" (or "a bug").
    done = run_swarm(["kill", "--brain", "http://127.0.0.1:1", "--token", token], _env(tmp_path / "home"))
    assert done.returncode == 1
    assert "--token" in done.stderr and "not a token" in done.stderr
    assert token not in done.stderr  # (a secret is never echoed)


def test_audit_tail_takes_a_huge_n_as_all_of_them(tmp_path: Path, workspace: Path) -> None:
    env = _env(tmp_path / "home")
    assert run_swarm(["snapshot", "create", "--workspace", str(workspace)], env).returncode == 0
    done = run_swarm(["audit", "tail", "-n", str(10**20), "--workspace", str(workspace)], env)
    assert done.returncode == 0, done.stderr
    assert "snapshot_create ok" in done.stdout


def test_audit_tail_refuses_a_nan_interval(tmp_path: Path, workspace: Path) -> None:
    done = run_swarm(["audit", "tail", "-f", "--interval", "nan", "--workspace", str(workspace)], _env(tmp_path))
    assert done.returncode == 1
    assert "--interval" in done.stderr


def test_a_config_with_a_byte_order_mark_is_read(tmp_path: Path, workspace: Path) -> None:
    config = tmp_path / "swarm.toml"
    config.write_bytes(b"\xef\xbb\xbf[limits]\ncalls_per_minute = 7\n")
    done = run_swarm(["status", "--workspace", str(workspace), "--config", str(config)], _env(tmp_path / "home"))
    assert done.returncode == 0, done.stderr
    assert "of 7 used" in done.stdout


def test_a_boolean_where_a_number_belongs_is_a_config_error(tmp_path: Path, workspace: Path) -> None:
    config = tmp_path / "swarm.toml"
    config.write_text("[limits]\ncalls_per_minute = true\n")
    done = run_swarm(["status", "--workspace", str(workspace), "--config", str(config)], _env(tmp_path / "home"))
    assert done.returncode == 1
    assert "limits.calls_per_minute" in done.stderr


@pytest.mark.parametrize(
    "text,key",
    [
        ("[brain]\nfailsafe_s = inf\n", "'brain.failsafe_s': not a finite number (got inf)"),
        ("[limits]\nmax_usd_per_action = +inf\n", "'limits.max_usd_per_action': not a finite number (got inf)"),
        ("[limits]\nusd_per_hour = -inf\n", "'limits.usd_per_hour': not a finite number (got -inf)"),
        ("[rollout]\nsteps = [1, nan]\n", "'rollout.steps.1': not a finite number (got nan)"),
    ],
)
def test_a_number_that_is_not_finite_is_a_config_error(tmp_path: Path, workspace: Path, text: str, key: str) -> None:
    """TOML has `inf` and `nan`, and `gt=0` lets `inf` through: `failsafe_s = inf` was a linked body that never fails
    closed, `max_usd_per_action = inf` no cap at all (review 22's judgement call, taken: no setting means them)."""
    config = tmp_path / "swarm.toml"
    config.write_text(text)
    done = run_swarm(["status", "--workspace", str(workspace), "--config", str(config)], _env(tmp_path / "home"))
    assert done.returncode == 1
    assert key in done.stderr
    assert not (tmp_path / "home" / "workspaces").exists()


def test_two_inits_at_once_both_write_a_whole_config(
    tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # They shared one temporary file: the first to rename it took the other's away ("swarm.toml: No such file").
    for name in [k for k in os.environ if k.startswith("SWARM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SWARM_HOME", str(tmp_path / "home"))
    config = tmp_path / "home" / "swarm.toml"
    failed: list[int] = []
    for _ in range(60):
        codes: list[int] = []
        start = threading.Barrier(2)

        def init(start: threading.Barrier = start, codes: list[int] = codes) -> None:
            start.wait()
            codes.append(main(["init", "--force", "--workspace", str(workspace)]))

        threads = [threading.Thread(target=init) for _ in range(2)]
        with redirect_stdout(io.StringIO()):
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        failed += [code for code in codes if code != 0]
    assert failed == []
    assert config.read_text().startswith("# Swarm configuration")
    assert [p.name for p in config.parent.iterdir() if p.name.endswith(".tmp")] == []
