"""The API tokens page under AppTest: a user creates a token (shown once, and it works), sees and
revokes their own; an admin sees and revokes everyone's."""

from __future__ import annotations

from sqlalchemy import select

from crm_core import platform
from db.engine import make_engine
from db.models import ApiToken

from .apptest_support import open_page, titles


def test_a_support_agent_creates_sees_and_revokes_their_own_token(app, app_db):
    open_page(app, "agent2", "api_tokens")
    assert titles(app) == ["API tokens"] and not app.exception
    app.text_input[0].input("helpdesk sync")
    app.checkbox[0].check()
    app.button[0].click().run()
    assert not app.exception
    assert "shown only this once" in app.success[0].value
    token = app.code[0].value
    assert token.startswith("crm_")
    with platform.unit_of_work(make_engine(app_db)) as session:
        actor = platform.authenticate_token(session, token)
        assert (actor.username, actor.read_only) == ("agent2", True)
        stored = session.scalar(select(ApiToken).where(ApiToken.id == actor.token_id))
        assert token not in (stored.token_hash, stored.prefix)
    metrics = {m.label: m.value for m in app.metric}
    assert int(metrics["Active tokens"]) >= 1 and int(metrics["Read-only"]) >= 1
    app.run()
    assert not app.code, "a token is shown once"
    revoke = next(s for s in app.selectbox if s.label == "Revoke a token")
    revoke.select(next(o for o in revoke.options if "helpdesk sync" in o))
    next(b for b in app.button if b.label == "Revoke").click().run()
    assert not app.exception and "revoked" in app.success[0].value
    with platform.unit_of_work(make_engine(app_db)) as session:
        try:
            platform.authenticate_token(session, token)
        except platform.AuthenticationError as exc:
            assert "revoked" in str(exc)
        else:
            raise AssertionError("the revoked token still works")


def test_an_admin_sees_everyones_tokens(app, app_db):
    with platform.unit_of_work(make_engine(app_db)) as session:
        analyst = platform.user_by_name(session, "analyst3")
        platform.create_token(session, platform.SYSTEM, analyst.id, "analyst3 notebook")
    open_page(app, "admin2", "api_tokens")
    assert not app.exception
    assert all("analyst3 notebook" not in str(frame.value.to_dict()) for frame in app.dataframe)
    app.toggle[0].set_value(True).run()
    assert not app.exception
    assert "analyst3 notebook" in app.dataframe[0].value["name"].tolist()
