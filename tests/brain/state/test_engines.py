"""The registry: a database URL names a kind of engine and where it keeps its state; a bad one opens nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from brain_server import BadDatabaseUrl, BrainSettings, MemoryStateEngine, NoDatabase, SqliteStateEngine
from brain_server.state import ENGINES, engine_kind, open_engine, sqlite_path, sqlite_url

from ..helpers import ENGINE_URLS
from .records import entry, token_record

pytestmark = pytest.mark.anyio

BAD_URLS = [
    pytest.param("", id="empty"),
    pytest.param("brain.db", id="not-a-url"),
    pytest.param("/var/lib/brain.db", id="a-path"),
    pytest.param("ftp://host/brain.db", id="unknown-scheme"),
    pytest.param("postgresql://host/brain", id="not-registered-yet"),
    pytest.param("sqlite://brain.db", id="relative-path"),
    pytest.param("sqlite:///", id="no-file"),
    pytest.param("memory://brain", id="memory-with-a-location"),
]


def test_every_registered_engine_runs_the_contract_tests() -> None:
    assert set(ENGINE_URLS) == set(ENGINES), "add a URL for the new engine to tests/brain/helpers.py"


async def test_a_sqlite_url_opens_the_sqlite_engine_on_that_file_and_it_keeps_its_state(tmp_path: Path) -> None:
    path = tmp_path / "state" / "brain.db"
    url = sqlite_url(path)
    assert sqlite_path(url) == path and engine_kind(url).durable
    engine = await open_engine(url, durability="crash")
    try:
        assert isinstance(engine, SqliteStateEngine) and path.exists()
        await engine.add_token(token_record(1), entry("token_create"))
    finally:
        await engine.close()
    again = await open_engine(url, create=False)
    try:
        assert [t.id for t in await again.tokens()] == ["tok_1"]
    finally:
        await again.close()


async def test_memory_urls_open_a_new_empty_engine_each_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_path("memory://") is None and not engine_kind("memory://").durable
    one = await open_engine("memory://")
    await one.add_token(token_record(1), entry("token_create"))
    two = await open_engine("MEMORY://")
    assert isinstance(two, MemoryStateEngine) and await two.tokens() == [], "nothing shared, nothing kept"
    await one.close()
    await two.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", BAD_URLS)
async def test_a_bad_url_is_refused_before_anything_is_opened_or_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadDatabaseUrl):
        engine_kind(url)
    with pytest.raises(BadDatabaseUrl):
        await open_engine(url)
    with pytest.raises(BadDatabaseUrl):
        sqlite_path(url)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", [u for u in BAD_URLS if u.values[0]])
def test_brain_settings_refuse_a_bad_url_when_they_are_built(url: str) -> None:
    with pytest.raises(ValidationError) as raised:
        BrainSettings(database_url=url)
    assert [err["loc"] for err in raised.value.errors()] == [("database_url",)]


def test_brain_settings_leave_an_empty_url_to_the_entry_point() -> None:
    assert BrainSettings().database_url == ""


def test_a_sqlite_url_is_made_only_of_an_absolute_path() -> None:
    with pytest.raises(BadDatabaseUrl):
        sqlite_url(Path("brain.db"))


async def test_opening_without_creating_needs_a_database_there_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "brain.db"
    with pytest.raises(NoDatabase):
        await open_engine(sqlite_url(missing), create=False)
    with pytest.raises(NoDatabase):
        await open_engine("memory://", create=False)
    assert list(tmp_path.iterdir()) == []
