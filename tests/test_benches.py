"""The benchmarks keep working as the code under them changes: each one's reporting runs here on a
tiny database (the figures themselves come from running them at scale)."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import batch
from batch.refresh import RefreshReport, StepRecord

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_refresh_bench_prints_each_step_and_the_total(tmp_path, monkeypatch, capsys):
    bench = _load("refresh_bench")
    report = RefreshReport(as_of=dt.date(2026, 11, 27), seconds=3.5,
                           steps=[StepRecord("Churn model", 2.0, "scored 10 customers"),
                                  StepRecord("Risk scores", 1.5, "no orders", status="skipped")])
    monkeypatch.setattr(batch, "run_refresh", lambda engine, as_of, concurrent=None: report)
    bench.run(f"sqlite:///{tmp_path / 'bench.sqlite'}", 0, "existing", seed=False)
    out = capsys.readouterr().out
    assert "step='Churn model' status=ok seconds=2.0 (scored 10 customers)" in out
    assert "step='Risk scores' status=skipped seconds=1.5" in out
    assert "refresh_total seconds=3.5" in out and "add up to 3.5 s" in out
    assert "segment_preview matches=0" in out
