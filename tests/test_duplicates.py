"""Duplicate scan: planted duplicates are found with their reasons; distinct people are not."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from crm_core import customers, platform
from crm_core.customers import duplicates
from db.models import AuditLog, CustomerAddress, DuplicateCandidate

from .factories import make_customer, make_user

T0 = dt.datetime(2025, 1, 1)


def _address(session, customer, postal):
    session.add(CustomerAddress(customer_id=customer.id, line1="1 Main St", city="Springfield", postal_code=postal,
                                country_code="US"))


@pytest.fixture
def people(session):
    made = {
        "maria": make_customer(session, T0, first_name="Maria", last_name="Garcia", email="maria.garcia@example.com",
                               phone="+34 600 111 222", country_code="ES"),
        "maria_dup": make_customer(session, T0, first_name="María", last_name="Garcia",
                                   email="Maria.Garcia@example.com", country_code="ES"),
        "maria_namesake": make_customer(session, T0, first_name="Maria", last_name="Garcia",
                                        email="mg1977@provider.net", phone="+34 699 000 999", country_code="ES"),
        "jon": make_customer(session, T0, first_name="Jonathan", last_name="Smith", email="jsmith@mail.com",
                             phone="+1 (555) 010-2030", country_code="US", city="Springfield"),
        "jon_dup": make_customer(session, T0, first_name="Jon", last_name="Smith", email="jonathan.s@other.com",
                                 phone="15550102030", country_code="US", city="Springfield"),
        "anna": make_customer(session, T0, first_name="Anna", last_name="Smith", email="anna.smith@x.com",
                              phone="+1 555 777 8888", country_code="US", city="Springfield"),
    }
    _address(session, made["jon"], "62704")
    _address(session, made["jon_dup"], "62704")
    session.flush()
    return made


def _pairs(session):
    return {(c.customer_a_id, c.customer_b_id): c for c in session.scalars(select(DuplicateCandidate))}


def _key(a, b):
    return tuple(sorted((a.id, b.id)))


def test_scan_finds_planted_duplicates_with_reasons(session, people):
    result = customers.scan_duplicates(session, platform.SYSTEM)
    found = _pairs(session)
    maria = found[_key(people["maria"], people["maria_dup"])]
    assert "same email" in maria.reasons and "same name" in maria.reasons
    assert maria.score >= 0.7
    jon = found[_key(people["jon"], people["jon_dup"])]
    assert "same phone" in jon.reasons and "same postal code" in jon.reasons
    assert "same name (Jonathan = Jon)" in jon.reasons  # a nickname scores as the name it stands for
    # A namesake with another email and phone, and a relative at the same address, are not duplicates.
    assert _key(people["maria"], people["maria_namesake"]) not in found
    assert _key(people["jon"], people["anna"]) not in found
    assert set(found) == {_key(people["maria"], people["maria_dup"]), _key(people["jon"], people["jon_dup"])}
    assert result["customers"] == 6 and result["new"] == 2
    assert session.scalar(select(AuditLog.after).where(AuditLog.action == "duplicates.scan"))["new"] == 2


def test_rescan_does_not_duplicate_pairs_or_reopen_dismissed_ones(session, people):
    customers.scan_duplicates(session, platform.SYSTEM)
    pair = _pairs(session)[_key(people["jon"], people["jon_dup"])]
    customers.dismiss_duplicate(session, platform.SYSTEM, pair.id, expected_version=pair.version)
    again = customers.scan_duplicates(session, platform.SYSTEM)
    assert (again["new"], again["updated"]) == (0, 1)
    assert session.scalar(select(func.count()).select_from(DuplicateCandidate)) == 2
    session.refresh(pair)
    assert pair.status == "dismissed"
    with pytest.raises(platform.ValidationError, match="already dismissed"):
        customers.dismiss_duplicate(session, platform.SYSTEM, pair.id)


def test_dismiss_detects_a_concurrent_review(session, people):
    customers.scan_duplicates(session, platform.SYSTEM)
    pair = next(iter(_pairs(session).values()))
    with pytest.raises(platform.ConflictError):
        customers.dismiss_duplicate(session, platform.SYSTEM, pair.id, expected_version=pair.version + 1)


def test_merged_customers_leave_the_queue_and_are_not_rescanned(session, people):
    customers.scan_duplicates(session, platform.SYSTEM)
    customers.merge_customers(session, platform.SYSTEM, people["maria"].id, people["maria_dup"].id)
    page = customers.duplicate_queue(session, platform.SYSTEM, status="open")
    assert [(r["customer_a"], r["customer_b"]) for r in page.rows] == [_key(people["jon"], people["jon_dup"])]
    merged = customers.duplicate_queue(session, platform.SYSTEM, status="merged")
    assert merged.total == 1 and merged.rows[0]["merge_id"] is not None
    assert customers.scan_duplicates(session, platform.SYSTEM)["customers"] == 5
    assert customers.duplicate_counts(session, platform.SYSTEM) == {"open": 1, "merged": 1, "dismissed": 0}


def test_queue_pages_and_sorts_by_score(session, people):
    customers.scan_duplicates(session, platform.SYSTEM)
    first = customers.duplicate_queue(session, platform.SYSTEM, page=1, page_size=1)
    second = customers.duplicate_queue(session, platform.SYSTEM, page=2, page_size=1)
    assert first.total == 2 and first.pages == 2
    assert first.rows[0]["score"] >= second.rows[0]["score"]
    assert "same phone" in first.rows[0]["reasons"] and "same email" in second.rows[0]["reasons"]
    with pytest.raises(platform.ValidationError):
        customers.duplicate_queue(session, platform.SYSTEM, status="maybe")
    assert sum(b["pairs"] for b in customers.duplicate_score_histogram(session, platform.SYSTEM)) == 2


def test_scan_needs_the_merge_permission(session, people):
    with pytest.raises(platform.PermissionDenied):
        customers.scan_duplicates(session, make_user(session, "analyst"))


def test_blocking_scales_without_comparing_everyone():
    """5,000 synthetic customers: blocking keeps candidate pairs near-linear."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    n = 5_000
    last = rng.choice(["Smith", "Jones", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Thomas"], n)
    first = rng.choice(["Ann", "Ben", "Cara", "Dan", "Eve", "Finn", "Gus", "Hana", "Ivy", "Jack"], n)
    frame = pd.DataFrame({"id": np.arange(1, n + 1), "first_name": first, "last_name": last,
                          "email": [f"user{i}@example.com" for i in range(n)],
                          "phone": [f"+1555{i:07d}" for i in range(n)], "country_code": "US", "city": None,
                          "postal_code": None})
    people = duplicates.normalise(frame)
    pairs = duplicates.candidate_pairs(people)
    assert len(pairs) < n * duplicates.MAX_BLOCK
    assert duplicates.score_pairs(people, pairs).empty  # same first and last name alone is not enough


def test_a_typo_that_reorders_the_sorted_name_still_matches():
    """Sorting a name's words puts 'harry hanson' as 'hanson harry' but 'haarry hanson' as it is: the
    name still counts as similar, so one person with another mailbox at the same address is found."""
    import pandas as pd

    frame = pd.DataFrame({"id": [1, 2, 3], "first_name": ["Harry", "Haarry", "Hanson"],
                          "last_name": ["Hanson", "Hanson", "Harry"],
                          "email": ["harry.hanson@example.com", "h.work@company.example", "hh@elsewhere.example"],
                          "phone": ["+44 20 7946 0000", "+44 20 7946 0000", ""], "country_code": "GB",
                          "city": "London", "postal_code": ["SW1A 1AA", "SW1A 1AA", "E1 6AN"]})
    people = duplicates.normalise(frame)
    scored = duplicates.score_pairs(people, duplicates.candidate_pairs(people))
    found = {(a, b): reasons for a, b, reasons in scored[["a", "b", "reasons"]].itertuples(index=False)}
    assert set(found) == {(1, 2)}
    assert "name 96% similar" in found[(1, 2)]


def test_a_nickname_scores_as_the_name_it_stands_for():
    """'Bob Smith' with another mailbox but Robert's phone is Robert; Rachel on the same phone (one
    household) is not, and neither is a nickname of a different name."""
    import pandas as pd

    frame = pd.DataFrame({"id": [1, 2, 3], "first_name": ["Robert", "Bob", "Rachel"],
                          "last_name": ["Smith", "Smith", "Smith"],
                          "email": ["robert.smith@example.com", "bobby77@mail.example", "rachel@home.example"],
                          "phone": ["+1 555 010 2030", "555-010-2030", "+1 555 010 2030"], "country_code": "US",
                          "city": None, "postal_code": None})
    people = duplicates.normalise(frame)
    scored = duplicates.score_pairs(people, duplicates.candidate_pairs(people))
    found = {(a, b): reasons for a, b, reasons in scored[["a", "b", "reasons"]].itertuples(index=False)}
    assert set(found) == {(1, 2)}
    assert found[(1, 2)] == ["same phone", "same name (Robert = Bob)"]


def test_nickname_pairs_relate_a_nickname_its_name_and_its_siblings_only():
    import pandas as pd

    a = pd.Series(["bob", "bob", "bob", "bill", "liz", "rachel", "zyxw", ""])
    b = pd.Series(["robert", "rob", "bob", "william", "elizabeth", "robert", "zyxw", ""])
    assert duplicates.nickname_pairs(a, b).tolist() == [True, True, False, True, True, False, False, False]
