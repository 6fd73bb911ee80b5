"""Where the refresh records its runs and steps: `refresh_runs` and `refresh_run_steps`.

Each run and each of its steps is committed as it starts and ends, in its own short transaction,
so a step that fails (or a process that dies) leaves the record of what happened: start, end,
status (ok / skipped / failed), the reason, and the rows the step wrote.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from sqlalchemy import Engine, insert, update

from crm_core import platform
from db.models import RefreshRun, RefreshRunStep, utcnow

DETAIL_LIMIT = 2_000


class RunLog(Protocol):
    """Where the refresh records its run and steps."""

    def start(self, as_of: dt.date, steps: list[tuple[str, str]]) -> int | None: ...

    def step_started(self, step: str) -> None: ...

    def step_finished(self, step: str, status: str, seconds: float, detail: str, rows: int | None) -> None: ...

    def finish(self, status: str, seconds: float) -> None: ...


class NoRunLog:
    """Records nothing (for stand-in steps in tests)."""

    def start(self, as_of, steps):
        return None

    def step_started(self, step):
        pass

    def step_finished(self, step, status, seconds, detail, rows):
        pass

    def finish(self, status, seconds):
        pass


class DatabaseRunLog:
    """Records the run in `refresh_runs` and `refresh_run_steps`, one short transaction per event."""

    def __init__(self, engine: Engine, triggered_by: str = "system"):
        self.engine = engine
        self.triggered_by = triggered_by[:64]
        self.run_id: int | None = None

    def start(self, as_of: dt.date, steps: list[tuple[str, str]]) -> int:
        with platform.unit_of_work(self.engine, write=True) as session:
            connection = session.connection()
            self.run_id = connection.execute(
                insert(RefreshRun).values(as_of=as_of, status="running", triggered_by=self.triggered_by,
                                          started_at=utcnow()).returning(RefreshRun.id)
            ).scalar_one()
            connection.execute(insert(RefreshRunStep), [
                {"run_id": self.run_id, "position": position, "step": step, "label": label[:120], "status": "running"}
                for position, (step, label) in enumerate(steps, start=1)
            ])
        return self.run_id

    def _update_step(self, step: str, **values: Any) -> None:
        with platform.unit_of_work(self.engine, write=True) as session:
            session.execute(update(RefreshRunStep)
                            .where(RefreshRunStep.run_id == self.run_id, RefreshRunStep.step == step).values(**values))

    def step_started(self, step: str) -> None:
        self._update_step(step, started_at=utcnow())

    def step_finished(self, step: str, status: str, seconds: float, detail: str, rows: int | None) -> None:
        self._update_step(step, status=status, finished_at=utcnow(), seconds=round(seconds, 3),
                          detail=detail[:DETAIL_LIMIT], rows_written=rows)

    def finish(self, status: str, seconds: float) -> None:
        with platform.unit_of_work(self.engine, write=True) as session:
            session.execute(update(RefreshRun).where(RefreshRun.id == self.run_id)
                            .values(status=status, finished_at=utcnow(), seconds=round(seconds, 3)))
