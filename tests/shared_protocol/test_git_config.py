"""`[git]` in swarm.toml: push off by default, the agents' branch prefix, git's time limit; bad values name it."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from shared_protocol.config import ConfigInvalid, SwarmConfig, parse_config, render_config


def test_push_is_off_by_default_and_the_defaults_are_written_out() -> None:
    git = SwarmConfig().git
    assert (git.push, git.branch_prefix, git.timeout_s) == (False, "swarm", 120.0)
    assert tomllib.loads(render_config(SwarmConfig()))["git"] == {
        "push": False,
        "branch_prefix": "swarm",
        "timeout_s": 120.0,
    }


def test_a_changed_git_section_is_read_back_unchanged() -> None:
    config = parse_config({"git": {"push": True, "branch_prefix": "bots", "timeout_s": 30}})
    assert config.git.push and parse_config(tomllib.loads(render_config(config))) == config


@pytest.mark.parametrize(
    ("git", "key"),
    [
        ({"push": "sometimes"}, "git.push"),
        ({"branch_prefix": "a/b"}, "git.branch_prefix"),
        ({"branch_prefix": "-x"}, "git.branch_prefix"),
        ({"timeout_s": 0}, "git.timeout_s"),
        ({"force": True}, "git.force"),
    ],
)
def test_a_bad_git_value_names_its_key(git: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigInvalid, match=key.replace(".", r"\.")):
        parse_config({"git": git})
