"""Which state engine a database URL names, and opening it: `open_engine("sqlite:///var/lib/swarm/brain.db")`.

A URL is `scheme://location`; the scheme picks an `EngineKind` from `ENGINES`, which checks the
location and opens the engine there. Another engine (PostgreSQL) is one module providing a
`StateEngine` and its `EngineKind`, and one line below.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..exceptions import BadDatabaseUrl
from ._memory import MEMORY
from ._protocols import Durability, EngineKind, StateEngine
from ._sqlite import SQLITE

ENGINES: dict[str, EngineKind] = {
    "memory": MEMORY,
    "sqlite": SQLITE,
}
"""Every kind of state engine, by the scheme of its URL."""

_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<location>.*)")


def _known() -> str:
    return ", ".join(kind.form for _, kind in sorted(ENGINES.items()))


def _split(url: str) -> tuple[EngineKind, str]:
    match = _URL.fullmatch(url)
    if match is None:
        raise BadDatabaseUrl(url, f"not a database URL: expected one of {_known()}")
    scheme, location = match["scheme"].lower(), match["location"]
    kind = ENGINES.get(scheme)
    if kind is None:
        raise BadDatabaseUrl(url, f"no state engine for '{scheme}://': expected one of {_known()}")
    problem = kind.problem(location)
    if problem is not None:
        raise BadDatabaseUrl(url, problem)
    return kind, location


def engine_kind(url: str) -> EngineKind:
    """The kind of engine `url` names, once its location is checked; `BadDatabaseUrl` if it names none.

    Pure: nothing is opened or created, so a setting can be checked when it is read.
    """
    return _split(url)[0]


async def open_engine(url: str, *, durability: Durability = "power_loss", create: bool = True) -> StateEngine:
    """Open the state engine `url` names (close it when done). `BadDatabaseUrl` if it names none.

    `create=False`: `NoDatabase`, and nothing created, if nothing is stored there yet.
    """
    kind, location = _split(url)
    return await kind.open(location, durability=durability, create=create)


def sqlite_url(path: Path) -> str:
    """The URL of a SQLite file, `sqlite:///ABSOLUTE/PATH`; `BadDatabaseUrl` for a relative path."""
    url = f"sqlite://{path}"
    _split(url)
    return url


def sqlite_path(url: str) -> Path | None:
    """The file a `sqlite:` URL names; None for another kind of engine. `BadDatabaseUrl` if it names none."""
    kind, location = _split(url)
    return Path(location) if kind is SQLITE else None
