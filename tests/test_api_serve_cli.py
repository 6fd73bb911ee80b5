"""`crm api serve` says where it listens before uvicorn starts (uvicorn itself logs warnings only)."""

from __future__ import annotations

from crm_cli.main import main


def test_api_serve_prints_its_address(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CRM_DATABASE_URL", f"sqlite:///{tmp_path / 'api.sqlite'}")
    served = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **options: served.update(app=app, **options))
    assert main(["api", "serve", "--port", "8123", "--workers", "3"]) == 0
    assert served["port"] == 8123 and served["workers"] == 3 and served["factory"] is True
    err = capsys.readouterr().err
    assert "http://127.0.0.1:8123" in err and "3 worker(s)" in err and "/docs" in err
