"""git configuration overrides handed to git in its environment, shared by the body's and the runner's host git.

`git -c KEY=VALUE` splits its argument at the first `=`, and a key's middle part (a filter's or a remote's name)
may itself hold `=`: `-c filter.a=b.clean=` sets `filter.a` to `b.clean=` and leaves the driver `a=b` running.
`GIT_CONFIG_COUNT`, `GIT_CONFIG_KEY_<n>` and `GIT_CONFIG_VALUE_<n>` (git 2.31 and later) carry key and value apart,
at the same command-line scope as `-c` (they outrank every config file).
"""

from __future__ import annotations

from collections.abc import Iterable

GIT_CONFIG_COUNT = "GIT_CONFIG_COUNT"


def config_env(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The environment entries that set each (key, value) of `pairs`, in order (a later pair wins, as with `-c`).

    A key or value holding a NUL or a newline cannot be passed (nor does git's config accept such a key)."""
    env: dict[str, str] = {}
    count = 0
    for key, value in pairs:
        if not key or "\0" in key or "\n" in key or "\0" in value:
            raise ValueError(f"git config key {key!r} cannot be passed to git")
        env[f"GIT_CONFIG_KEY_{count}"] = key
        env[f"GIT_CONFIG_VALUE_{count}"] = value
        count += 1
    env[GIT_CONFIG_COUNT] = str(count)
    return env
