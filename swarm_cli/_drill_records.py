"""The drills' results on this machine, with their time: `$SWARM_HOME/readiness/drills.json`.

`swarm readiness --drill` records the kill drill, the test page and a restore drill per
workspace; `swarm snapshot drill` records its restore drill too. `swarm readiness` without
`--drill` reads them, so it can say how old the last drill is. The file is rewritten whole
(temporary file, then rename): a reader never sees half of it.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from body_mcp.exceptions import StateUnusable


class DrillRecord(BaseModel):
    """One drill: when it ran, whether it passed, how long the measured part took, and what happened."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: datetime
    ok: bool
    seconds: float | None = None
    detail: str = ""


class DrillRecords(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kill: DrillRecord | None = None
    escalation: DrillRecord | None = None
    restore: dict[str, DrillRecord] = Field(default_factory=dict[str, DrillRecord])
    """By workspace path."""


def records_file(home: Path) -> Path:
    return home / "readiness" / "drills.json"


def load_records(home: Path) -> DrillRecords:
    """What the drills recorded (nothing yet: empty records). A file Swarm did not write is an error naming it."""
    path = records_file(home)
    try:
        return DrillRecords.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return DrillRecords()
    except (ValidationError, ValueError):
        raise StateUnusable(
            path,
            "damaged: not the drill records Swarm writes; delete it and run `swarm readiness --drill`",
            damaged=True,
        ) from None


def save_records(home: Path, records: DrillRecords) -> None:
    path = records_file(home)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(records.model_dump(mode="json"), indent=2))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def record_kill(home: Path, record: DrillRecord) -> None:
    save_records(home, load_records(home).model_copy(update={"kill": record}))


def record_escalation(home: Path, record: DrillRecord) -> None:
    save_records(home, load_records(home).model_copy(update={"escalation": record}))


def record_restore(home: Path, workspace: Path, record: DrillRecord) -> None:
    records = load_records(home)
    save_records(home, records.model_copy(update={"restore": {**records.restore, str(workspace): record}}))
