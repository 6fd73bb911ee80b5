"""The schema itself refuses impossible data, on both backends."""

import datetime as dt

import pytest
from sqlalchemy.exc import IntegrityError

from db.models import LoyaltyAccount, SupportTicket, SurveyResponse
from tests.factories import make_customer

NOW = dt.datetime(2026, 1, 15, 12, 0)


def _expect_rejected(session, obj):
    session.add(obj)
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()


@pytest.mark.parametrize("score,survey_type,ok", [
    (0, "nps", True), (10, "nps", True), (11, "nps", False), (-1, "nps", False),
    (1, "csat", True), (5, "csat", True), (0, "csat", False), (6, "csat", False),
])
def test_survey_scores_in_range(session, score, survey_type, ok):
    customer = make_customer(session, NOW)
    response = SurveyResponse(customer_id=customer.id, survey_type=survey_type, score=score, responded_at=NOW)
    if ok:
        session.add(response)
        session.flush()
    else:
        _expect_rejected(session, response)


def test_point_balance_cannot_go_negative(session):
    customer = make_customer(session, NOW)
    _expect_rejected(session, LoyaltyAccount(customer_id=customer.id, points_balance=-1, lifetime_points=0,
                                             enrolled_at=NOW))


def test_enumerated_status_and_rating(session):
    customer = make_customer(session, NOW)
    _expect_rejected(session, SupportTicket(ticket_number="T-1", customer_id=customer.id, subject="x",
                                            status="lost", created_at=NOW))
    customer = make_customer(session, NOW)
    _expect_rejected(session, SupportTicket(ticket_number="T-2", customer_id=customer.id, subject="x",
                                            csat_rating=7, created_at=NOW))


def test_customer_status_must_be_known(session):
    with pytest.raises(IntegrityError):
        make_customer(session, NOW, status="vanished")
    session.rollback()


def test_external_id_keeps_leading_zeros(session):
    customer = make_customer(session, NOW, external_id="000123")
    session.commit()
    session.expire_all()
    assert session.get(type(customer), customer.id).external_id == "000123"
