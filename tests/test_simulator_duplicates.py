"""The demo shop's duplicate customers: second records of earlier customers that the scan can find."""

import datetime as dt

import numpy as np
import pytest
from sqlalchemy import select

import demo
from crm_core import customers, platform
from db.engine import session_factory
from db.models import DuplicateCandidate

END = dt.datetime(2026, 6, 30, 18, 0)


@pytest.fixture(scope="module")
def shop():
    sim = demo.Simulator(1500, seed=11, end=END)
    return sim, sim.build()


def _digits(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isdigit())[-9:]


def _mailbox(email: str) -> str:
    local = email.lower().split("@")[0]
    return local.split("+")[0].replace(".", "")


def test_about_one_percent_are_second_records_and_the_count_stays_n(shop):
    sim, tables = shop
    people = tables["customers"].set_index("id")
    pairs = sim.duplicate_customer_ids()
    assert len(people) == 1500
    assert len(pairs) == 15
    assert len(np.unique(pairs)) == 2 * len(pairs)  # nobody is in two pairs
    original, second = people.loc[pairs[:, 0]], people.loc[pairs[:, 1]]
    later = second["signed_up_at"].to_numpy() - original["signed_up_at"].to_numpy()
    assert (later >= np.timedelta64(demo.simulator.DUPLICATE_MIN_DAYS - 1, "D")).all()
    assert (original["status"] == "active").all() and (second["status"] == "active").all()
    for column in ("country_code", "city", "date_of_birth", "gender"):
        assert (original[column].to_numpy() == second[column].to_numpy()).all(), column
    # Never a verbatim copy: the e-mail is always written differently.
    assert (original["email"].to_numpy() != second["email"].to_numpy()).all()
    # Each second record is findable by its mailbox or its phone number written another way.
    same_mailbox = [_mailbox(a) == _mailbox(b) for a, b in zip(original["email"], second["email"], strict=True)]
    same_phone = [_digits(a) == _digits(b) for a, b in zip(original["phone"], second["phone"], strict=True)]
    assert all(m or p for m, p in zip(same_mailbox, same_phone, strict=True))
    assert 0 < sum(same_mailbox) < len(pairs) and sum(same_phone) > 0
    # Phones are reformatted, not copied, and names vary in some of the pairs.
    assert (original["phone"].to_numpy() != second["phone"].to_numpy()).any()
    names = (original["first_name"] + " " + original["last_name"]).to_numpy()
    assert (names != (second["first_name"] + " " + second["last_name"]).to_numpy()).sum() >= len(pairs) // 2
    # They are real customers: most second records have orders of their own, after they signed up.
    orders = tables["orders"]
    theirs = orders[orders["customer_id"].isin(pairs[:, 1])]
    assert theirs["customer_id"].nunique() >= len(pairs) // 2
    signed = people.loc[theirs["customer_id"], "signed_up_at"].to_numpy()
    assert (theirs["ordered_at"].to_numpy() >= signed).all()
    # Most ship to the original's postal code.
    addresses = tables["customer_addresses"]
    shipping = addresses[addresses["kind"] == "shipping"].set_index("customer_id")["postal_code"]
    assert (shipping.loc[pairs[:, 0]].to_numpy() == shipping.loc[pairs[:, 1]].to_numpy()).mean() >= 0.5


def test_same_seed_same_pairs_other_seed_other_pairs():
    first, second, other = (demo.Simulator(300, seed=s, end=END) for s in (5, 5, 6))
    a, b, c = (sim.build()["customers"] for sim in (first, second, other))
    assert len(first.duplicate_customer_ids()) == 3
    np.testing.assert_array_equal(first.duplicate_customer_ids(), second.duplicate_customer_ids())
    ids = first.duplicate_customer_ids()[:, 1]
    assert a.set_index("id").loc[ids, "email"].tolist() == b.set_index("id").loc[ids, "email"].tolist()
    assert not np.array_equal(first.duplicate_customer_ids(), other.duplicate_customer_ids())
    assert len(c) == 300


@pytest.mark.parametrize(("customers_", "expected"), [(20, 0), (49, 0), (200, 3), (1000, 10)])
def test_small_shops_have_none_and_others_about_one_percent(customers_, expected):
    sim = demo.Simulator(customers_, seed=2, end=END)
    sim.build()
    assert len(sim.duplicate_customer_ids()) == expected


def test_a_scan_of_a_seeded_shop_finds_the_planted_pairs(engine):
    demo.seed_database(engine, 1000, seed=3, end=END)
    sim = demo.Simulator(1000, seed=3, end=END)
    sim.build()
    planted = {tuple(int(i) for i in pair) for pair in sim.duplicate_customer_ids()}
    assert len(planted) == 10
    session = session_factory(engine)()
    try:
        customers.scan_duplicates(session, platform.SYSTEM)
        found = {(a, b): score for a, b, score in session.execute(
            select(DuplicateCandidate.customer_a_id, DuplicateCandidate.customer_b_id, DuplicateCandidate.score))}
    finally:
        session.rollback()
        session.close()
    hits = planted & set(found)
    assert len(hits) >= 0.9 * len(planted)
    assert all(found[pair] >= 0.6 for pair in hits)
    assert len(set(found) - planted) <= 1  # few pairs that are not planted duplicates
