"""`[rollout]` in swarm.toml: the shadow period, readiness's age and the canary steps, checked when the file is read."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from shared_protocol.config import ConfigInvalid, SwarmConfig, parse_config, render_config


def test_rollout_defaults_are_the_specifications_and_are_written_out() -> None:
    rollout = SwarmConfig().rollout
    assert (rollout.shadow_days, rollout.min_shadow_tasks, rollout.readiness_max_age_s) == (7, 20, 86_400)
    assert (rollout.steps, rollout.min_tasks_per_step) == ([1, 10, 50, 100], 20)
    written = tomllib.loads(render_config(SwarmConfig()))["rollout"]
    assert written == {
        "shadow_days": 7,
        "min_shadow_tasks": 20,
        "readiness_max_age_s": 86_400,
        "steps": [1, 10, 50, 100],
        "min_tasks_per_step": 20,
    }


def test_a_changed_rollout_is_read_back_unchanged() -> None:
    config = parse_config({"rollout": {"shadow_days": 3, "steps": [5, 100], "readiness_max_age_s": 600}})
    assert parse_config(tomllib.loads(render_config(config))) == config


@pytest.mark.parametrize(
    ("rollout", "key"),
    [
        ({"shadow_days": -1}, "rollout.shadow_days"),
        ({"readiness_max_age_s": 0}, "rollout.readiness_max_age_s"),
        ({"steps": [10, 5, 100]}, "rollout.steps"),
        ({"steps": [1, 50]}, "rollout.steps"),
        ({"steps": [0, 100]}, "rollout.steps"),
        ({"steps": []}, "rollout.steps"),
        ({"min_tasks_per_step": 0}, "rollout.min_tasks_per_step"),
        ({"canary": True}, "rollout.canary"),
    ],
)
def test_a_bad_rollout_value_is_an_error_naming_the_key(rollout: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigInvalid, match=key.replace(".", r"\.")):
        parse_config({"rollout": rollout})
