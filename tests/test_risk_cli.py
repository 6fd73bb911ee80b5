"""`crm risk score` and `crm referrals process` on a small simulated shop."""

from __future__ import annotations

import datetime as dt

import pytest

import demo
from crm_cli.main import main
from db.engine import make_engine


@pytest.fixture
def db_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    return url


def test_risk_score_and_referrals_process(db_url, capsys):
    assert main(["db", "upgrade"]) == 0
    assert main(["risk", "score"]) == 1
    assert "Risk not scored: no customers signed up by" in capsys.readouterr().out
    engine = make_engine(db_url)
    demo.seed_database(engine, 400, seed=5, end=dt.datetime.now().replace(microsecond=0))
    engine.dispose()
    assert main(["risk", "score"]) == 0
    out = capsys.readouterr().out
    assert "Scored 400 customers as of" in out and "reviews opened" in out and "anomaly model over" in out
    assert main(["referrals", "process"]) == 0
    assert "checked 0" in capsys.readouterr().out  # the simulator's referrals were settled before the programme
    assert main(["risk", "score", "--as-of", "2031-01-01"]) == 2
