"""The SQLite engine's agent pauses (`agent_pauses`, schema v14): one row per paused agent, its `AgentPause` as JSON."""

from __future__ import annotations

from shared_protocol.brain import AgentPause

from ._records import LogEntry
from ._sqlite_db import SqliteDatabase


class SqlitePauses(SqliteDatabase):
    """Agents paused until a human resumes them."""

    async def agent_pauses(self) -> list[AgentPause]:
        rows = await self._rows("SELECT pause FROM agent_pauses ORDER BY agent")
        return [AgentPause.model_validate_json(row[0]) for row in rows]

    async def pause_agent(self, pause: AgentPause, log: LogEntry) -> bool:
        async with self._write() as conn:
            cursor = await conn.execute(
                "INSERT INTO agent_pauses (agent, pause) VALUES (?, ?) ON CONFLICT (agent) DO NOTHING",
                (pause.agent, pause.model_dump_json()),
            )
            if cursor.rowcount:
                await self._log(conn, log)
        return bool(cursor.rowcount)

    async def resume_agent(self, agent: str, log: LogEntry) -> AgentPause | None:
        async with self._write() as conn:
            async with conn.execute("DELETE FROM agent_pauses WHERE agent = ? RETURNING pause", (agent,)) as cursor:
                row = await cursor.fetchone()
            if row is not None:
                await self._log(conn, log)
        return None if row is None else AgentPause.model_validate_json(row[0])
