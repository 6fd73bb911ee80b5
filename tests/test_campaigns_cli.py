"""`crm campaigns ...` on a small simulated shop."""

import json

import pytest

from crm_cli.main import main


@pytest.fixture
def db_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    return url


def test_list_results_and_training_from_the_command_line(db_url, capsys):
    assert main(["seed", "--customers", "400", "--seed", "5", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["campaigns", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 4 and {c["status"] for c in listed} == {"completed", "running"}
    assert all(c["targets"] == c["treatment"] + c["control"] for c in listed)
    finished = next(c for c in listed if c["status"] == "completed")
    assert main(["campaigns", "results", str(finished["id"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {g["group"] for g in result["groups"]} == {"treatment", "control"}
    assert set(result["conversion"]) >= {"estimate", "low", "high"} and "roi" in result["roi"]
    assert main(["campaigns", "results", str(finished["id"])]) == 0
    assert "conversion lift" in capsys.readouterr().out
    assert main(["campaigns", "results", "999"]) == 2
    assert "There is no campaign 999." in capsys.readouterr().err
    assert main(["campaigns", "train-uplift"]) == 2
    assert "Too little to learn from" in capsys.readouterr().err
