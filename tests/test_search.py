"""Customer search: typo tolerance, filters, sorting, paging and saved searches, on both backends."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from crm_core import customers, platform
from db.models import (
    AuditLog,
    ChurnPrediction,
    CustomerAnalytics,
    CustomerLifecycleStage,
    CustomerSegment,
    CustomerSegmentMembership,
    LoyaltyAccount,
    SavedSearch,
)

from .factories import make_customer, make_user

AS_OF = dt.date(2026, 6, 30)


def _analytics(session, customer, revenue, last_order, clv=None, churn=None, orders=1):
    session.add(CustomerAnalytics(
        customer_id=customer.id, as_of=AS_OF, order_count=orders, total_revenue=Decimal(str(revenue)),
        last_order_at=last_order, clv_12m=None if clv is None else Decimal(str(clv)), churn_probability=churn,
        sessions_90d=0, open_tickets=0,
    ))


@pytest.fixture
def people(session):
    admin = make_user(session, "admin")
    john = make_customer(session, dt.datetime(2024, 1, 10, 9), first_name="John", last_name="Smith",
                         email="john.smith@mail.example", phone="+49 30 1234567", country_code="DE", city="Berlin")
    jane = make_customer(session, dt.datetime(2025, 3, 5, 9), first_name="Jane", last_name="Doe",
                         email="jane.doe@post.example", phone="+33 612345678", country_code="FR", city="Paris")
    johan = make_customer(session, dt.datetime(2025, 8, 1, 9), first_name="Johan", last_name="Schmidt",
                          email="j.schmidt@web.example", country_code="DE", city="Hamburg")
    mary = make_customer(session, dt.datetime(2026, 2, 1, 9), first_name="Mary", last_name="Major",
                         email="mary@acme.example", company="Acme Corporation", country_code="GB", city="London")
    ghost = make_customer(session, dt.datetime(2024, 5, 1, 9), status="merged", first_name="John", last_name="Smith",
                          email="old.john@mail.example", country_code="DE")
    _analytics(session, john, 1200, dt.datetime(2026, 6, 1), clv=800, churn=0.1, orders=9)
    _analytics(session, jane, 300, dt.datetime(2025, 12, 1), clv=90, churn=0.6, orders=2)
    _analytics(session, johan, 50, dt.datetime(2026, 5, 20), clv=20, churn=0.85, orders=1)
    # Mary has no analytics row yet (a new signup): nulls sort last and fail value filters.
    for customer, stage in ((john, "champion"), (jane, "at_risk"), (johan, "new_customer"), (mary, "prospect")):
        session.add(CustomerLifecycleStage(customer_id=customer.id, stage=stage, entered_at=dt.datetime(2026, 6, 1)))
    session.add_all([LoyaltyAccount(customer_id=john.id, tier="gold"), LoyaltyAccount(customer_id=jane.id, tier="silver")])
    vip = CustomerSegment(name="VIP", segment_type="custom", kind="static")
    session.add(vip)
    session.flush()
    session.add_all([
        CustomerSegmentMembership(segment_id=vip.id, customer_id=john.id, assignment="manual"),
        CustomerSegmentMembership(segment_id=vip.id, customer_id=jane.id, assignment="manual", is_active=False,
                                  left_at=dt.datetime(2026, 1, 1)),
    ])
    session.flush()
    return {"admin": admin, "john": john, "jane": jane, "johan": johan, "mary": mary, "ghost": ghost, "vip": vip}


def ids(page) -> list[int]:
    return [row["id"] for row in page.rows]


def find(session, people, **fields):
    return customers.search_customers(session, people["admin"], customers.CustomerQuery(**fields), page_size=100)


def test_typos_in_a_name_still_find_the_customer(session, people):
    found = find(session, people, text="Jonh Smiht")
    assert ids(found)[0] == people["john"].id
    assert people["ghost"].id not in ids(found)  # merged customers are hidden by default
    assert people["jane"].id not in ids(found)


def test_single_misspelt_word_and_partial_text(session, people):
    assert ids(find(session, people, text="smiht"))[0] == people["john"].id
    assert ids(find(session, people, text="Schmid")) [0] == people["johan"].id
    assert ids(find(session, people, text="acme")) == [people["mary"].id]


def test_exact_email_phone_and_id_rank_first(session, people):
    assert ids(find(session, people, text="JANE.DOE@post.example"))[0] == people["jane"].id
    assert ids(find(session, people, text="+49 30 1234567"))[0] == people["john"].id
    assert ids(find(session, people, text="301234567"))[0] == people["john"].id
    assert ids(find(session, people, text=str(people["johan"].id)))[0] == people["johan"].id


def test_nonsense_text_finds_nobody(session, people):
    found = find(session, people, text="Zyxwvut")
    assert found.total == 0 and found.rows == []


def test_status_filter_reveals_merged_customers(session, people):
    found = find(session, people, text="John Smith", statuses=("merged",))
    assert ids(found) == [people["ghost"].id]


@pytest.mark.parametrize("fields, expected", [
    ({"countries": ("DE",)}, {"john", "johan"}),
    ({"countries": ("gb",)}, {"mary"}),
    ({"stages": ("at_risk", "prospect")}, {"jane", "mary"}),
    ({"tiers": ("gold",)}, {"john"}),
    ({"risk_levels": ("critical",)}, {"johan"}),
    ({"risk_levels": ("medium", "high")}, {"jane"}),
    ({"signup_from": dt.date(2025, 1, 1), "signup_to": dt.date(2025, 8, 1)}, {"jane", "johan"}),
    ({"last_order_from": dt.date(2026, 5, 1)}, {"john", "johan"}),
    ({"last_order_to": dt.date(2025, 12, 31)}, {"jane"}),
    ({"revenue_min": 100, "revenue_max": 500}, {"jane"}),
    ({"clv_min": 50}, {"john", "jane"}),
    ({"clv_max": 50}, {"johan"}),
])
def test_each_filter_selects_the_right_customers(session, people, fields, expected):
    found = find(session, people, **fields)
    assert set(ids(found)) == {people[name].id for name in expected}
    assert found.total == len(expected)


def test_segment_filter_uses_active_memberships(session, people):
    found = find(session, people, segment_ids=(people["vip"].id,))
    assert ids(found) == [people["john"].id]  # Jane left the segment


def test_filters_combine_with_text(session, people):
    assert ids(find(session, people, text="Jonh Smiht", countries=("FR",))) == []
    assert ids(find(session, people, text="jo", countries=("DE",), tiers=("gold",))) == [people["john"].id]


def test_stored_churn_predictions_take_precedence_for_risk(session, people):
    session.add(ChurnPrediction(customer_id=people["john"].id, as_of=AS_OF, probability=0.9, risk_level="critical"))
    session.flush()
    # Once predictions exist, the latest batch decides; customers without one fall back to their probability band.
    assert set(ids(find(session, people, risk_levels=("critical",)))) == {people["john"].id}
    rows = {r["id"]: r for r in find(session, people).rows}
    assert rows[people["john"].id]["risk_level"] == "critical"
    assert rows[people["jane"].id]["risk_level"] == "high"


def test_sorting_by_whitelisted_columns(session, people):
    by_revenue = find(session, people, sort="revenue", direction="desc")
    assert ids(by_revenue) == [people[n].id for n in ("john", "jane", "johan", "mary")]  # no snapshot: last
    ascending = find(session, people, sort="revenue", direction="asc")
    assert ids(ascending) == [people[n].id for n in ("johan", "jane", "john", "mary")]
    by_name = find(session, people, sort="name", direction="asc")
    assert [r["name"] for r in by_name.rows] == ["Jane Doe", "Mary Major", "Johan Schmidt", "John Smith"]
    newest = find(session, people)  # no text, default "relevance": newest signups first
    assert ids(newest)[0] == people["mary"].id


def test_paging_returns_the_count_and_slices(session, people):
    viewer = people["admin"]
    query = customers.CustomerQuery(sort="signed_up_at", direction="asc")
    first = customers.search_customers(session, viewer, query, page=1, page_size=3)
    second = customers.search_customers(session, viewer, query, page=2, page_size=3)
    assert first.total == second.total == 4 and first.pages == 2
    assert ids(first) + ids(second) == [people[n].id for n in ("john", "jane", "johan", "mary")]
    with pytest.raises(platform.ValidationError, match="Page size"):
        customers.search_customers(session, viewer, query, page_size=0)


def test_text_search_pages_on_both_backends(session, people):
    viewer = people["admin"]
    query = customers.CustomerQuery(text="jo", sort="name", direction="asc")
    whole = customers.search_customers(session, viewer, query, page_size=100)
    first = customers.search_customers(session, viewer, query, page=1, page_size=1)
    assert first.total == whole.total >= 2
    assert ids(first) == ids(whole)[:1]
    beyond = customers.search_customers(session, viewer, query, page=99, page_size=1)
    assert beyond.rows == [] and beyond.total == whole.total


def test_search_ids_streams_every_match_in_chunks(session, people):
    chunks = list(customers.search_ids(session, people["admin"], customers.CustomerQuery(countries=("DE", "FR", "GB")), batch=2))
    assert [len(c) for c in chunks] == [2, 2]
    assert sorted(sum(chunks, [])) == sorted(people[n].id for n in ("john", "jane", "johan", "mary"))
    text_chunks = list(customers.search_ids(session, people["admin"], customers.CustomerQuery(text="Jonh Smiht"), batch=2))
    assert people["john"].id in sum(text_chunks, [])


@pytest.mark.parametrize("fields, message", [
    ({"sort": "password_hash"}, "Cannot sort"),
    ({"direction": "sideways"}, "direction"),
    ({"countries": ("Germany",)}, "two-letter"),
    ({"stages": ("zombie",)}, "Unknown stage"),
    ({"revenue_min": 10, "revenue_max": 5}, "revenue min is above"),
    ({"signup_from": dt.date(2026, 1, 2), "signup_to": dt.date(2026, 1, 1)}, "signup from is after"),
    ({"revenue_min": "lots"}, "must be a number"),
    ({"segment_ids": ("1",)}, "whole numbers"),
    ({"text": "x" * 201}, "at most 200"),
])
def test_bad_queries_are_refused_with_a_message(session, people, fields, message):
    with pytest.raises(platform.ValidationError, match=message):
        find(session, people, **fields)


def test_query_round_trips_through_json_data(session):
    query = customers.CustomerQuery(text="john", countries=("DE",), signup_from=dt.date(2025, 1, 1), revenue_min=10.0,
                          sort="revenue")
    assert customers.CustomerQuery.from_dict(query.to_dict()) == query
    with pytest.raises(platform.ValidationError, match="Unknown search field"):
        customers.CustomerQuery.from_dict({"txt": "john"})
    with pytest.raises(platform.ValidationError, match="must be a date"):
        customers.CustomerQuery.from_dict({"signup_from": "last week"})


def test_roles_without_customer_access_cannot_search(session, people):
    executive = make_user(session, "executive")
    with pytest.raises(platform.PermissionDenied):
        customers.search_customers(session, executive, customers.CustomerQuery())


def test_saved_searches_are_per_user_unique_and_audited(session, people):
    analyst = make_user(session, "analyst")
    other = make_user(session, "analyst")
    query = customers.CustomerQuery(text="smith", countries=("DE",))
    saved = customers.save_search(session, analyst, "  German   Smiths ", query)
    assert saved.name == "German Smiths"
    with pytest.raises(platform.ValidationError, match="already have a saved search"):
        customers.save_search(session, analyst, "german smiths", customers.CustomerQuery())
    customers.save_search(session, other, "German Smiths", customers.CustomerQuery())  # another user may reuse the name
    assert [s["name"] for s in customers.list_searches(session, analyst)] == ["German Smiths"]
    loaded = customers.load_search(session, analyst, saved.id)
    assert loaded == customers.validate_query(query)
    assert ids(customers.search_customers(session, analyst, loaded)) == [people["john"].id]
    with pytest.raises(platform.NotFound):
        customers.load_search(session, other, saved.id)
    with pytest.raises(platform.ValidationError, match="needs a name"):
        customers.save_search(session, analyst, "   ", query)

    version = saved.version
    customers.update_search(session, analyst, saved.id, version, name="Smiths in Germany")
    with pytest.raises(platform.ConflictError, match="changed by someone else"):
        customers.update_search(session, analyst, saved.id, version, name="Stale edit")
    customers.delete_search(session, analyst, saved.id)
    assert session.scalar(select(func.count()).select_from(SavedSearch).where(SavedSearch.user_id == analyst.id)) == 0
    actions = session.scalars(select(AuditLog.action).where(AuditLog.entity_type == "saved_search",
                                                            AuditLog.actor_id == analyst.id).order_by(AuditLog.id))
    assert list(actions) == ["saved_search.create", "saved_search.update", "saved_search.delete"]


def test_filter_options_list_segments_and_countries(session, people):
    options = customers.search_filter_options(session, people["admin"])
    assert options["segments"] == [{"id": people["vip"].id, "name": "VIP", "kind": "static", "editable": True}]
    assert options["countries"] == ["DE", "FR", "GB"]
