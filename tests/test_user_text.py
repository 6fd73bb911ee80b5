"""User text is text: a name, a subject or a description is shown as typed, never as Markdown."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from db.engine import make_engine
from db.models import Customer, LoyaltyAccount
from ui.format import plain

from .apptest_support import open_page, open_tab

PIXEL = "![x](https://attacker.example/pixel.png)"


@pytest.mark.parametrize("text", [PIXEL, "[click](https://attacker.example)", "# Heading", "**bold** _it_",
                                  ":red[alarm] :material/warning:", "<img src=x onerror=alert(1)>", "a\\b `code`",
                                  "1. list\n- item", "$x^2$", "~~gone~~"])
def test_plain_escapes_every_markdown_construct(text):
    escaped = plain(text)
    for construct in ("![", "](", "[", "**", "# ", ":red[", "<img", "`", "$", "~~"):
        if construct in text:
            assert construct not in escaped.replace("\\" + construct[0], ""), (text, escaped)


def _first_member(app_db) -> int:
    from sqlalchemy import select
    with make_engine(app_db).connect() as connection:
        return connection.scalar(select(LoyaltyAccount.customer_id).order_by(LoyaltyAccount.customer_id).limit(1))


@pytest.fixture
def hostile_name(app_db):
    engine = make_engine(app_db)
    customer_id = _first_member(app_db)
    with engine.begin() as connection:
        before = connection.execute(
            Customer.__table__.select().where(Customer.id == customer_id)).mappings().one()
        connection.execute(update(Customer).where(Customer.id == customer_id).values(first_name=PIXEL, last_name=""))
    yield customer_id
    with engine.begin() as connection:
        connection.execute(update(Customer).where(Customer.id == customer_id).values(
            first_name=before["first_name"], last_name=before["last_name"]))


def _markdown_shown(app) -> str:
    parts = [e.value for e in app.subheader] + [e.value for e in app.markdown] + [e.value for e in app.caption]
    parts += [e.value for e in app.info]
    return "\n".join(str(p) for p in parts)


def test_a_name_with_markdown_is_shown_as_text_on_customer_360(app, hostile_name):
    open_page(app, "csm1", "customer_360")
    app.number_input(key="c360_id").set_value(hostile_name).run()
    assert not app.exception
    shown = _markdown_shown(app)
    assert plain(PIXEL) in shown and PIXEL not in shown.replace(plain(PIXEL), "")


def test_a_name_with_markdown_is_shown_as_text_on_loyalty(app, hostile_name):
    open_page(app, "agent1", "loyalty")
    open_tab(app, "loyalty_tab", "Member account")
    app.number_input(key="loyalty_customer_id").set_value(hostile_name).run()
    assert not app.exception
    shown = _markdown_shown(app)
    assert plain(PIXEL) in shown and PIXEL not in shown.replace(plain(PIXEL), "")


@pytest.fixture
def hostile_details(app_db):
    """A company, city and social handle typed (or imported) with Markdown in them."""
    from db.models import SocialAccount

    engine = make_engine(app_db)
    customer_id = _first_member(app_db)
    with engine.begin() as connection:
        before = connection.execute(
            Customer.__table__.select().where(Customer.id == customer_id)).mappings().one()
        connection.execute(update(Customer).where(Customer.id == customer_id).values(company=PIXEL, city=PIXEL))
        connection.execute(SocialAccount.__table__.insert().values(
            customer_id=customer_id, platform="twitter", handle="evil![x](https://attacker.example/h.png)",
            followers=1, is_verified=False))
    yield customer_id
    with engine.begin() as connection:
        connection.execute(SocialAccount.__table__.delete().where(SocialAccount.customer_id == customer_id,
                                                                   SocialAccount.handle.like("evil%")))
        connection.execute(update(Customer).where(Customer.id == customer_id).values(
            company=before["company"], city=before["city"]))


def test_company_city_and_handle_with_markdown_are_shown_as_text_on_customer_360(app, hostile_details):
    open_page(app, "csm1", "customer_360")
    app.number_input(key="c360_id").set_value(hostile_details).run()
    assert not app.exception
    shown = _markdown_shown(app)
    assert plain(PIXEL) in shown and "](https://attacker.example" not in shown
