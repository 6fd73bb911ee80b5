"""The Churn page under AppTest: the ranked at-risk list, its filters, the model card and rollback."""

from __future__ import annotations

from sqlalchemy import func, select

from db.engine import make_engine
from db.models import ChurnPrediction, MLModel

from .apptest_support import open_page, open_tab


def _scored(app_db) -> tuple[int, int]:
    with make_engine(app_db).connect() as connection:
        latest = connection.scalar(select(func.max(ChurnPrediction.as_of)))
        total = connection.scalar(select(func.count()).where(ChurnPrediction.as_of == latest))
        urgent = connection.scalar(select(func.count()).where(
            ChurnPrediction.as_of == latest, ChurnPrediction.risk_level.in_(["high", "critical"])))
    return total, urgent


def test_success_manager_sees_the_ranked_at_risk_list(app, app_db):
    open_page(app, "csm1", "churn")
    assert not app.exception
    total, urgent = _scored(app_db)
    assert total > 0
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Customers scored"] == f"{total:,}"
    assert metrics["High or critical risk"] == f"{urgent:,}"
    table = app.dataframe[0].value
    assert set(table["risk_level"]) <= {"high", "critical"}
    losses = table["expected_loss"].tolist()
    assert losses == sorted(losses, reverse=True)  # ranked by probability x value
    assert table["interventions"].str.len().gt(0).all()
    assert any(c.value.startswith(f"{urgent:,} customers") for c in app.caption)

    app.multiselect(key="risk_levels").set_value(["low"]).run()
    assert not app.exception
    assert set(app.dataframe[0].value["risk_level"]) == {"low"}
    assert not any(b.label.startswith("Activate") for b in app.button)  # only admins manage models


def test_admin_rolls_back_to_an_earlier_model_version(app, app_db):
    engine = make_engine(app_db)
    with engine.begin() as connection:
        active = connection.execute(select(MLModel).where(MLModel.name == "churn", MLModel.is_active)).one()
        # A second stored version to roll back to: a copy of the active one.
        connection.execute(MLModel.__table__.insert().values(
            name="churn", version=active.version + 1, algorithm=active.algorithm, params=active.params,
            features=active.features, training_start=active.training_start, training_end=active.training_end,
            metrics=active.metrics, artifact=active.artifact, is_active=False, created_at=active.created_at))
    open_page(app, "admin1", "churn")
    assert not app.exception
    open_tab(app, "churn_tab", "Model card")
    app.selectbox(key="activate_version").select(active.version + 1)
    next(b for b in app.button if b.label.startswith("Activate")).click().run()
    assert not app.exception
    with engine.connect() as connection:
        now_active = connection.scalar(select(MLModel.version).where(MLModel.name == "churn", MLModel.is_active))
    assert now_active == active.version + 1
    # Roll back to the original.
    app.selectbox(key="activate_version").select(active.version)
    next(b for b in app.button if b.label.startswith("Activate")).click().run()
    with engine.connect() as connection:
        now_active = connection.scalar(select(MLModel.version).where(MLModel.name == "churn", MLModel.is_active))
    assert now_active == active.version
    engine.dispose()



def test_success_manager_opens_a_cta_from_the_at_risk_list(app, app_db):
    from crm_core import success
    from db.engine import session_factory
    from db.models import SuccessCta

    open_page(app, "csm1", "churn")
    shown = [int(c) for c in app.dataframe[0].value["customer_id"]]
    engine = make_engine(app_db)
    with session_factory(engine)() as s:
        taken = set(s.scalars(select(SuccessCta.customer_id).where(SuccessCta.trigger == success.MANUAL_TRIGGER,
                                                                   SuccessCta.status != "closed")))
    row = next(i for i, c in enumerate(shown) if c not in taken)
    customer_id = shown[row]
    app.session_state["risk_table"] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    app.run()
    assert not app.exception
    assert any(e.label == "Calls to action" for e in app.expander)
    key = f"cta_churn_{customer_id}"
    open_button = next(b for b in app.button if b.label == "Open CTA")
    open_button.click().run()
    assert any("A reason is required" in e.value for e in app.error)
    app.text_area(key=f"{key}_reason").input("High risk after two late deliveries: call this week")
    next(b for b in app.button if b.label == "Open CTA").click().run()
    assert not app.exception
    assert any(s.value.startswith("CTA #") and "opened" in s.value for s in app.success)
    with session_factory(engine)() as s:
        cta = s.scalar(select(SuccessCta).where(SuccessCta.customer_id == customer_id,
                                                SuccessCta.trigger == success.MANUAL_TRIGGER,
                                                SuccessCta.status != "closed"))
        assert cta is not None and cta.signals["opened_from"] == "churn" and cta.signals["churn_risk"] in (
            "high", "critical")
    engine.dispose()
