"""The SQLite engine's rollouts (`rollouts`, schema v21): one row per agent, its `RolloutState` as JSON; and the
generation of what their evaluations read (`rollout_inputs`, schema v23, kept by triggers)."""

from __future__ import annotations

from shared_protocol.brain import RolloutState

from ._records import LogEntry
from ._sqlite_db import SqliteDatabase


class SqliteRollouts(SqliteDatabase):
    """Each agent's rollout state, replaced whole with its log line in one transaction."""

    async def rollouts(self) -> list[RolloutState]:
        rows = await self._rows("SELECT state FROM rollouts ORDER BY agent")
        return [RolloutState.model_validate_json(row[0]) for row in rows]

    async def rollout(self, agent: str) -> RolloutState | None:
        row = await self._row("SELECT state FROM rollouts WHERE agent = ?", (agent,))
        return None if row is None else RolloutState.model_validate_json(row[0])

    async def put_rollout(self, state: RolloutState, log: LogEntry) -> None:
        async with self._write() as conn:
            await conn.execute(
                "INSERT INTO rollouts (agent, state) VALUES (?, ?) "
                "ON CONFLICT (agent) DO UPDATE SET state = excluded.state",
                (state.agent, state.model_dump_json()),
            )
            await self._log(conn, log)

    async def rollout_inputs_generation(self) -> int | None:
        row = await self._row("SELECT generation FROM rollout_inputs WHERE id = 1")
        assert row is not None, "the schema's migration inserts the one row"
        return int(row[0])
