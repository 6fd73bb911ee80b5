"""Loyalty ledger: idempotent earning, FIFO expiry, never-negative balances under concurrency, limits."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm.exc import StaleDataError

from crm_core import loyalty, platform
from crm_core.loyalty import accounts, batch, ledger, rules
from db.engine import session_factory
from db.models import (
    AuditLog,
    LoyaltyAccount,
    LoyaltyAdjustmentRequest,
    LoyaltyTierChange,
    LoyaltyTransaction,
    utcnow,
)

from .factories import make_customer, make_order, make_user

NOW = dt.datetime(2026, 11, 1, 12, 0)


def _member(session, enrolled: dt.datetime = dt.datetime(2020, 1, 1)):
    customer = make_customer(session, dt.datetime(2019, 6, 1))
    account = loyalty.enroll(session, platform.SYSTEM, customer.id)
    account.enrolled_at = enrolled
    session.flush()
    return customer, account


def _ledger(session, customer_id):
    return session.execute(
        select(LoyaltyTransaction.kind, LoyaltyTransaction.points, LoyaltyTransaction.balance_after)
        .where(LoyaltyTransaction.customer_id == customer_id).order_by(LoyaltyTransaction.id)
    ).all()


def test_earning_is_idempotent_per_order(session):
    customer, account = _member(session)
    order = make_order(session, customer, NOW, "123.45")
    first = loyalty.earn_for_order(session, platform.SYSTEM, order.id)
    second = loyalty.earn_for_order(session, platform.SYSTEM, order.id)
    assert first.id == second.id
    assert (first.points, first.balance_after, first.idempotency_key) == (123, 123, f"earn:order:{order.id}")
    assert _ledger(session, customer.id) == [("earn", 123, 123)]
    assert account.points_balance == 123 and account.lifetime_points == 123
    assert session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "loyalty.earn")) == 1


def test_earning_refuses_unpaid_orders_and_non_members(session):
    customer, _ = _member(session)
    with pytest.raises(platform.ValidationError, match="already a member"):
        loyalty.enroll(session, platform.SYSTEM, customer.id)
    cancelled = make_order(session, customer, NOW, "50", status="cancelled")
    with pytest.raises(platform.ValidationError, match="only paid, shipped or delivered"):
        loyalty.earn_for_order(session, platform.SYSTEM, cancelled.id)
    before = make_order(session, customer, dt.datetime(2019, 12, 1), "50")
    with pytest.raises(platform.ValidationError, match="before the customer joined"):
        loyalty.earn_for_order(session, platform.SYSTEM, before.id)
    stranger = make_customer(session, dt.datetime(2020, 1, 1))
    with pytest.raises(platform.NotFound, match="not a loyalty member"):
        loyalty.earn_for_order(session, platform.SYSTEM, make_order(session, stranger, NOW, "10").id)
    with pytest.raises(platform.NotFound, match="no order"):
        loyalty.earn_for_order(session, platform.SYSTEM, 999_999)
    assert session.scalar(select(func.count()).select_from(LoyaltyTransaction)) == 0


def test_batch_earning_is_set_based_idempotent_and_keeps_running_balances(engine, session):
    ann, ann_account = _member(session)
    bob, _ = _member(session)
    stranger = make_customer(session, dt.datetime(2020, 1, 1))
    o1 = make_order(session, ann, NOW - dt.timedelta(days=3), "100.99")
    make_order(session, ann, NOW - dt.timedelta(days=2), "1000")
    make_order(session, ann, NOW - dt.timedelta(days=1), "70", status="cancelled")
    make_order(session, bob, NOW - dt.timedelta(days=2), "40")
    make_order(session, stranger, NOW - dt.timedelta(days=2), "500")
    make_order(session, bob, dt.datetime(2019, 1, 1), "999")  # before `since`
    loyalty.earn_for_order(session, platform.SYSTEM, o1.id)  # already earned online: must not be posted twice
    session.commit()

    result = loyalty.earn_for_orders(engine, dt.date(2026, 1, 1), now=NOW)
    assert result == {"entries": 2, "points": 1040, "tiers_raised": 1}
    assert loyalty.earn_for_orders(engine, dt.date(2026, 1, 1), now=NOW + dt.timedelta(hours=1))["entries"] == 0

    session.rollback()  # end the read snapshot and reload what the batch wrote
    session.expire_all()
    assert _ledger(session, ann.id) == [("earn", 100, 100), ("earn", 1000, 1100)]
    assert _ledger(session, bob.id) == [("earn", 40, 40)]
    account = session.get(LoyaltyAccount, ann_account.id)
    assert (account.points_balance, account.lifetime_points, account.tier) == (1100, 1100, "silver")
    changes = session.execute(select(LoyaltyTierChange.from_tier, LoyaltyTierChange.to_tier, LoyaltyTierChange.changed_at)
                              .where(LoyaltyTierChange.account_id == account.id).order_by(LoyaltyTierChange.id)).all()
    assert [(f, t) for f, t, _ in changes] == [(None, "bronze"), ("bronze", "silver")]
    assert changes[-1][2] == NOW
    for customer in (ann, bob):
        assert loyalty.recompute_balance(session, customer.id)["consistent"]



def test_points_of_cancelled_returned_or_refunded_orders_are_taken_back_once_and_never_below_zero(engine, session):
    ann, ann_account = _member(session)
    bob, bob_account = _member(session)
    o1 = make_order(session, ann, NOW - dt.timedelta(days=3), "100")
    o2 = make_order(session, ann, NOW - dt.timedelta(days=2), "1000")
    make_order(session, ann, NOW - dt.timedelta(days=1), "50")
    b1 = make_order(session, bob, NOW - dt.timedelta(days=2), "40")
    session.commit()
    loyalty.earn_for_orders(engine, dt.date(2026, 1, 1), now=NOW)
    session.expire_all()
    loyalty.redeem(session, platform.SYSTEM, ann.id, 1100)  # ann spends most of it: 50 left
    for order, status in ((o1, "refunded"), (o2, "returned"), (b1, "cancelled")):
        session.get(type(order), order.id).status = status
    session.commit()

    later = NOW + dt.timedelta(hours=1)
    # ann: o1 takes back the 50 she still has; o2 finds nothing left. bob: all 40.
    assert loyalty.reverse_for_orders(engine, dt.date(2026, 1, 1), now=later) == {"entries": 2, "points": 90}
    assert loyalty.reverse_for_orders(engine, dt.date(2026, 1, 1), now=later + dt.timedelta(hours=1)) == {"entries": 0, "points": 0}

    session.rollback()
    session.expire_all()
    assert _ledger(session, ann.id)[-1] == ("reverse", -50, 0)
    assert _ledger(session, bob.id) == [("earn", 40, 40), ("reverse", -40, 0)]
    ann_now, bob_now = session.get(LoyaltyAccount, ann_account.id), session.get(LoyaltyAccount, bob_account.id)
    assert (ann_now.points_balance, ann_now.lifetime_points) == (0, 1100)
    assert (bob_now.points_balance, bob_now.lifetime_points) == (0, 0)
    keys = set(session.scalars(select(LoyaltyTransaction.idempotency_key).where(LoyaltyTransaction.kind == "reverse")))
    assert keys == {f"reverse:order:{o1.id}", f"reverse:order:{b1.id}"}
    for customer in (ann, bob):
        assert loyalty.recompute_balance(session, customer.id)["consistent"]
    assert session.scalar(select(func.count()).select_from(AuditLog).where(
        AuditLog.action == "loyalty.reverse.batch")) == 2
    # orders placed before `since` are not looked at
    old = make_order(session, bob, dt.datetime(2025, 1, 1), "30", status="refunded")
    session.add(LoyaltyTransaction(account_id=bob_account.id, customer_id=bob.id, kind="adjust", points=30,
                                   balance_after=30, source_type="manual", reason="goodwill", created_at=NOW))
    bob_now.points_balance = 30
    session.add(LoyaltyTransaction(account_id=bob_account.id, customer_id=bob.id, kind="earn", points=30,
                                   balance_after=60, source_type="order", source_id=str(old.id),
                                   idempotency_key=f"earn:order:{old.id}", reason="old order", created_at=NOW))
    bob_now.points_balance = 60
    session.commit()
    assert loyalty.reverse_for_orders(engine, dt.date(2026, 1, 1), now=later + dt.timedelta(hours=2))["entries"] == 0
    assert loyalty.reverse_for_orders(engine, dt.date(2024, 1, 1), now=later + dt.timedelta(hours=3)) == {
        "entries": 1, "points": 30}


# --------------------------------------------------------------------------- batch jobs: one unit of work, retried

BATCH_JOBS = {
    "earn": lambda engine: loyalty.earn_for_orders(engine, dt.date(2026, 1, 1), now=NOW),
    "reverse": lambda engine: loyalty.reverse_for_orders(engine, dt.date(2026, 1, 1), now=NOW),
    "expire": lambda engine: loyalty.expire_points(engine, dt.date(2026, 3, 2), now=NOW),
}


def _job_fails_with(monkeypatch, make_error, times: int) -> list[int]:
    """The job's last statement (its audit row) fails `times` times with `make_error(session)`, then
    succeeds; returns the attempts made, one entry each."""
    attempts: list[int] = []
    audit = batch.record_audit

    def failing_audit(session, *args, **kwargs):
        attempts.append(1)
        if len(attempts) <= times:
            raise make_error(session)
        return audit(session, *args, **kwargs)

    monkeypatch.setattr(batch, "record_audit", failing_audit)
    monkeypatch.setattr(batch, "RETRY_PAUSE_SECONDS", 0)
    return attempts


def _lose_the_connection(session):
    """A lost connection: on PostgreSQL the server really ends it; SQLite has no server to lose."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        session.execute(text("SELECT 1"))  # raises: the connection is gone
    return OperationalError("SELECT 1", {}, Exception("disk I/O error"))


def _earning_member(engine) -> int:
    with platform.unit_of_work(session_factory(engine)) as s:
        customer, _ = _member(s)
        make_order(s, customer, NOW - dt.timedelta(days=2), "120")
        return customer.id


@pytest.mark.parametrize("job", sorted(BATCH_JOBS))
def test_a_lost_connection_in_a_batch_job_is_one_line_and_writes_nothing(engine, monkeypatch, job):
    customer_id = _earning_member(engine)
    attempts = _job_fails_with(monkeypatch, _lose_the_connection, times=1)
    with pytest.raises(platform.ServiceUnavailable) as raised:
        BATCH_JOBS[job](engine)
    assert isinstance(raised.value, platform.DomainError) and not isinstance(raised.value, OperationalError)
    assert len(str(raised.value).splitlines()) == 1 and "could not be reached" in str(raised.value)
    assert len(attempts) == 1, "a lost connection is not retried"
    with session_factory(engine)() as s:
        assert _ledger(s, customer_id) == []


def test_a_busy_database_is_retried_a_few_times_then_one_line(engine, monkeypatch):
    customer_id = _earning_member(engine)
    attempts = _job_fails_with(monkeypatch, lambda _: OperationalError(
        "UPDATE", {}, Exception("database is locked")), times=batch.RETRY_ATTEMPTS)
    with pytest.raises(platform.ServiceUnavailable, match="busy") as raised:
        loyalty.earn_for_orders(engine, dt.date(2026, 1, 1), now=NOW)
    assert len(str(raised.value).splitlines()) == 1
    assert len(attempts) == batch.RETRY_ATTEMPTS
    with session_factory(engine)() as s:
        assert _ledger(s, customer_id) == []


@pytest.mark.parametrize("clash", [
    lambda _: IntegrityError("INSERT", {}, Exception("duplicate key value violates unique constraint")),
    lambda _: StaleDataError("UPDATE statement on table 'customer_loyalty_accounts' expected to update 1 row(s)"),
    lambda _: OperationalError("SELECT", {}, Exception("deadlock detected")),
], ids=["unique", "version", "deadlock"])
def test_a_clash_with_another_writer_is_retried_and_posts_once(engine, monkeypatch, clash):
    customer_id = _earning_member(engine)
    attempts = _job_fails_with(monkeypatch, clash, times=2)
    assert loyalty.earn_for_orders(engine, dt.date(2026, 1, 1), now=NOW) == {
        "entries": 1, "points": 120, "tiers_raised": 0}
    assert len(attempts) == 3
    with session_factory(engine)() as s:
        assert _ledger(s, customer_id) == [("earn", 120, 120)]
        assert loyalty.recompute_balance(s, customer_id)["consistent"]


def test_a_conflict_still_there_at_the_last_attempt_is_a_conflict_error(engine, monkeypatch):
    _earning_member(engine)
    attempts = _job_fails_with(monkeypatch, lambda _: IntegrityError(
        "INSERT", {}, Exception("duplicate key")), times=batch.RETRY_ATTEMPTS)
    with pytest.raises(platform.ConflictError):
        loyalty.earn_for_orders(engine, dt.date(2026, 1, 1), now=NOW)
    assert len(attempts) == batch.RETRY_ATTEMPTS


def test_the_command_says_a_busy_database_in_one_line(tmp_path, monkeypatch, capsys):
    """`crm loyalty earn` while another process holds SQLite's write lock past the busy timeout."""
    import sqlite3

    from crm_cli.main import main

    url = f"sqlite:///{tmp_path / 'busy.sqlite'}"
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    monkeypatch.setattr("db.engine.SQLITE_BUSY_TIMEOUT_MS", 100)
    monkeypatch.setattr(batch, "RETRY_PAUSE_SECONDS", 0)
    holder = sqlite3.connect(tmp_path / "busy.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert main(["loyalty", "earn", "--since", "2026-01-01"]) == 2
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: The database is busy"), err
    assert main(["loyalty", "earn", "--since", "2026-01-01"]) == 0


def test_tier_multiplier_and_tier_change_rows_online(session):
    customer, account = _member(session)
    loyalty.earn_for_order(session, platform.SYSTEM, make_order(session, customer, NOW, "5000").id)
    assert account.tier == "gold"  # 5,000 lifetime points reach gold straight from bronze
    entry = loyalty.earn_for_order(session, platform.SYSTEM, make_order(session, customer, NOW, "100").id)
    assert entry.points == 125  # gold multiplier 1.25
    history = session.scalars(select(LoyaltyTierChange.to_tier).where(LoyaltyTierChange.account_id == account.id)
                              .order_by(LoyaltyTierChange.id)).all()
    assert history == ["bronze", "gold"]


def test_fifo_expiry_hand_example(engine, session):
    """365-day expiry. Credits 100 (2024-01-01) and 50 (2024-06-10); redeem 120 (2024-07-01);
    credit 30 (2025-03-01). FIFO: the redemption used the 100 and 20 of the 50."""
    session.add(loyalty_settings(expiry_days=365))
    customer, account = _member(session, enrolled=dt.datetime(2023, 12, 1))
    for kind, points, when in [("earn", 100, dt.datetime(2024, 1, 1)), ("earn", 50, dt.datetime(2024, 6, 10)),
                               ("redeem", -120, dt.datetime(2024, 7, 1)), ("earn", 30, dt.datetime(2025, 3, 1))]:
        ledger.post_entry(session, account, kind, points, platform.SYSTEM, reason="hand example", now=when)
    session.commit()

    outlook = loyalty.expiry_outlook(session, platform.SYSTEM, dt.date(2025, 5, 1), months=3)
    assert outlook["overdue"] == 0
    assert [(m["month"], m["points"]) for m in outlook["months"]] == [("2025-05", 0), ("2025-06", 30), ("2025-07", 0)]
    # stored by the refresh of the date: the same outlook, read from one row
    assert loyalty.refresh_expiry_outlook(session, dt.date(2025, 5, 1)) == 60  # 30 in 2025-06, 30 in 2026-03
    stored = loyalty.expiry_outlook(session, platform.SYSTEM, dt.date(2025, 5, 1), months=3)
    assert stored["as_of_refresh"] is not None and outlook["as_of_refresh"] is None
    assert (stored["overdue"], stored["months"]) == (outlook["overdue"], outlook["months"])
    session.commit()

    # 2025-01-15: only the 100 is older than a year, and it was spent first.
    assert loyalty.expire_points(engine, dt.date(2025, 1, 15)) == {"accounts": 0, "points": 0}
    # 2025-06-15: the unspent 30 of the June credit lapse.
    assert loyalty.expire_points(engine, dt.date(2025, 6, 15)) == {"accounts": 1, "points": 30}
    assert loyalty.expire_points(engine, dt.date(2025, 6, 15)) == {"accounts": 0, "points": 0}  # re-run: nothing
    # 2026-03-02: the 2025-03-01 credit of 30 lapses too.
    assert loyalty.expire_points(engine, dt.date(2026, 3, 2)) == {"accounts": 1, "points": 30}

    session.rollback()  # end the read snapshot and reload what the batch wrote
    session.expire_all()
    assert _ledger(session, customer.id)[-2:] == [("expire", -30, 30), ("expire", -30, 0)]
    assert session.get(LoyaltyAccount, account.id).points_balance == 0
    assert session.get(LoyaltyAccount, account.id).lifetime_points == 180
    assert loyalty.recompute_balance(session, customer.id)["consistent"]


def loyalty_settings(**overrides):
    from db.models import AppSetting

    return AppSetting(key=rules.SETTINGS_KEY, value=loyalty.validate_settings(overrides))


def test_redemption_never_takes_the_balance_below_zero(session):
    customer, account = _member(session)
    loyalty.adjust(session, platform.SYSTEM, customer.id, 100, "Welcome gift")
    with pytest.raises(loyalty.InsufficientPoints, match="has 100 points"):
        loyalty.redeem(session, platform.SYSTEM, customer.id, 150)
    for bad in (0, -5, 2.5, "10", True):
        with pytest.raises(platform.ValidationError):
            loyalty.redeem(session, platform.SYSTEM, customer.id, bad)
    entry = loyalty.redeem(session, platform.SYSTEM, customer.id, 100, "Voucher", idempotency_key="r-1")
    again = loyalty.redeem(session, platform.SYSTEM, customer.id, 100, "Voucher", idempotency_key="r-1")
    assert entry.id == again.id and entry.balance_after == 0
    assert _ledger(session, customer.id) == [("adjust", 100, 100), ("redeem", -100, 0)]


def test_concurrent_redemptions_never_overdraw(engine):
    """8 threads race to redeem 30 points 5 times each from 1,000: exactly 33 succeed."""
    with platform.unit_of_work(session_factory(engine)) as s:
        customer, _ = _member(s)
        ledger.post_entry(s, s.scalars(select(LoyaltyAccount)).one(), "earn", 1000, platform.SYSTEM, reason="seed")
        customer_id = customer.id
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(5):
            try:
                loyalty.run_with_retry(engine, lambda s: loyalty.redeem(s, platform.SYSTEM, customer_id, 30, "race"))
                result = "ok"
            except loyalty.InsufficientPoints:
                result = "refused"
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 33 and outcomes.count("refused") == 7
    with session_factory(engine)() as s:
        check = loyalty.recompute_balance(s, customer_id)
        assert check == {"balance": 10, "ledger_sum": 10, "last_balance_after": 10, "lowest_balance_after": 10,
                         "consistent": True}
        balances = s.scalars(select(LoyaltyTransaction.balance_after).where(LoyaltyTransaction.kind == "redeem")
                             .order_by(LoyaltyTransaction.id)).all()
        assert balances == list(range(970, 9, -30))  # each entry saw the previous one's balance


def test_adjustments_respect_role_limits_and_need_a_second_approver(session):
    agent = make_user(session, "support_agent")
    csm = make_user(session, "success_manager")
    other_csm = make_user(session, "success_manager")
    analyst = make_user(session, "analyst")
    customer, account = _member(session)

    with pytest.raises(platform.PermissionDenied, match="may adjust at most 1,000 points"):
        loyalty.adjust(session, agent, customer.id, 1500, "Goodwill gesture")
    with pytest.raises(platform.PermissionDenied):
        loyalty.adjust(session, analyst, customer.id, 10, "Goodwill gesture")
    with pytest.raises(platform.ValidationError, match="reason"):
        loyalty.adjust(session, agent, customer.id, 10, "  ")
    with pytest.raises(platform.ValidationError, match="non-zero whole number"):
        loyalty.adjust(session, agent, customer.id, 0, "Goodwill gesture")
    with pytest.raises(loyalty.InsufficientPoints):
        loyalty.adjust(session, agent, customer.id, -10, "Correction of a double credit")

    posted = loyalty.adjust(session, agent, customer.id, 800, "Goodwill gesture")
    assert posted.status == "posted" and posted.transaction.balance_after == 800

    pending = loyalty.adjust(session, csm, customer.id, 3000, "Compensation for lost parcel")
    assert pending.status == "pending" and account.points_balance == 800
    with pytest.raises(platform.PermissionDenied, match="your own"):
        loyalty.decide_adjustment(session, csm, pending.request.id, approve=True)
    with pytest.raises(platform.PermissionDenied):
        loyalty.decide_adjustment(session, agent, pending.request.id, approve=True)
    decided = loyalty.decide_adjustment(session, other_csm, pending.request.id, approve=True, note="ok")
    assert decided.status == "approved" and account.points_balance == 3800
    entry = session.get(LoyaltyTransaction, decided.transaction_id)
    assert (entry.approved_by_id, entry.created_by_id, entry.balance_after) == (other_csm.id, csm.id, 3800)
    with pytest.raises(platform.ConflictError, match="already approved"):
        loyalty.decide_adjustment(session, other_csm, pending.request.id, approve=False, note="late")

    second = loyalty.adjust(session, csm, customer.id, -2000, "Reversal of a duplicate credit")
    with pytest.raises(platform.ValidationError, match="why"):
        loyalty.decide_adjustment(session, other_csm, second.request.id, approve=False)
    rejected = loyalty.decide_adjustment(session, other_csm, second.request.id, approve=False, note="Not a duplicate")
    assert rejected.status == "rejected" and account.points_balance == 3800
    assert loyalty.pending_adjustments(session, csm).total == 0
    assert session.scalar(select(func.count()).select_from(LoyaltyAdjustmentRequest)) == 2
    actions = set(session.scalars(select(AuditLog.action)))
    assert {"loyalty.adjust", "loyalty.adjust.request", "loyalty.adjust.approved", "loyalty.adjust.rejected"} <= actions


def test_settings_validation_versioning_and_retiering(session):
    admin = make_user(session, "admin")
    customer, account = _member(session)
    loyalty.adjust(session, admin, customer.id, 900, "Migration of old points")
    assert account.tier == "bronze"
    bad = dict(loyalty.DEFAULT_SETTINGS, tier_thresholds={"bronze": 0, "silver": 500, "gold": 400,
                                                          "platinum": 15_000, "diamond": 40_000})
    with pytest.raises(platform.ValidationError, match="gold threshold"):
        loyalty.save_settings(session, admin, bad, expected_version=0)
    with pytest.raises(platform.ValidationError, match="whole number"):
        loyalty.save_settings(session, admin, {"expiry_days": "a year"}, expected_version=0)
    with pytest.raises(platform.PermissionDenied):
        loyalty.save_settings(session, make_user(session, "success_manager"), {}, expected_version=0)
    thresholds = {"bronze": 0, "silver": 500, "gold": 5_000, "platinum": 15_000, "diamond": 40_000}
    saved, version = loyalty.save_settings(session, admin, {"tier_thresholds": thresholds}, expected_version=0)
    assert version == 1 and saved["tier_thresholds"]["silver"] == 500
    session.refresh(account)
    assert account.tier == "silver"
    with pytest.raises(platform.ConflictError, match=r"The loyalty settings were changed by someone else while you "
                                                     r"were editing \(version 0 is now 1\)"):
        loyalty.save_settings(session, admin, {"expiry_days": 400}, expected_version=0)
    with pytest.raises(platform.ConflictError, match=r"The loyalty settings have no version 7; their current version "
                                                     r"is 1\. Reload"):  # a version they never had
        loyalty.save_settings(session, admin, {"expiry_days": 400}, expected_version=7)


def test_a_failure_mid_operation_leaves_nothing_written(engine, monkeypatch):
    with platform.unit_of_work(session_factory(engine)) as s:
        customer, _ = _member(s)
        loyalty.adjust(s, platform.SYSTEM, customer.id, 500, "Opening balance")
        customer_id = customer.id

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(accounts, "record_audit", broken)
    with pytest.raises(RuntimeError), platform.unit_of_work(session_factory(engine)) as s:
        loyalty.redeem(s, platform.SYSTEM, customer_id, 200, "Voucher")
    with session_factory(engine)() as s:
        assert loyalty.recompute_balance(s, customer_id)["balance"] == 500
        assert s.scalar(select(func.count()).select_from(LoyaltyTransaction)) == 1


def test_read_models(session):
    customer, _ = _member(session)
    loyalty.earn_for_order(session, platform.SYSTEM, make_order(session, customer, NOW, "1200").id)
    loyalty.redeem(session, platform.SYSTEM, customer.id, 200, "Voucher")
    summary = loyalty.account_summary(session, platform.SYSTEM, customer.id, as_of=dt.date(2026, 11, 2))
    assert (summary["balance"], summary["tier"], summary["next_tier"], summary["points_to_next_tier"]) == \
        (1000, "silver", "gold", 3800)
    assert summary["balance_value"] == 10.0
    page = loyalty.ledger_page(session, platform.SYSTEM, customer.id, page=1, page_size=1)
    assert page.total == 2 and page.pages == 2 and page.rows[0]["kind"] == "redeem"
    tiers = {row["tier"]: row["members"] for row in loyalty.tier_distribution(session, platform.SYSTEM)}
    assert tiers == {"bronze": 0, "silver": 1, "gold": 0, "platinum": 0, "diamond": 0}
    assert loyalty.points_liability(session, platform.SYSTEM) == {"members": 1, "outstanding_points": 1000,
                                                          "point_value": 0.01, "liability": 10.0}
    earned = session.scalar(select(LoyaltyTransaction.created_at).where(LoyaltyTransaction.kind == "earn"))
    lapse = (earned + dt.timedelta(days=730)).date()
    outlook = loyalty.expiry_outlook(session, platform.SYSTEM, lapse.replace(day=1), months=2)
    following = (lapse.replace(day=28) + dt.timedelta(days=7)).strftime("%Y-%m")
    assert [(m["month"], m["points"]) for m in outlook["months"]] == [(lapse.strftime("%Y-%m"), 1000), (following, 0)]
    assert not loyalty.account_summary(session, platform.SYSTEM, make_customer(session, NOW).id)["member"]


def test_cli_runs_the_batch_steps(engine, session, monkeypatch, capsys):
    from crm_cli.main import main

    yesterday = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=1)
    customer, _ = _member(session)
    make_order(session, customer, yesterday, "250")
    session.commit()
    monkeypatch.setenv("CRM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    assert main(["loyalty", "earn", "--since", (yesterday.date() - dt.timedelta(days=1)).isoformat()]) == 0
    assert "Posted 1 earn entries (250 points)" in capsys.readouterr().out
    assert main(["loyalty", "expire", "--as-of", dt.date.today().isoformat()]) == 0
    assert "Expired 0 points on 0 accounts" in capsys.readouterr().out
    assert main(["loyalty", "check", str(customer.id)]) == 0
    assert "balance 250, ledger sum 250" in capsys.readouterr().out
    session.expire_all()
    refunded = make_order(session, customer, yesterday, "100")
    session.commit()
    assert main(["loyalty", "earn", "--since", (yesterday.date() - dt.timedelta(days=1)).isoformat()]) == 0
    session.get(type(refunded), refunded.id).status = "refunded"
    session.commit()
    capsys.readouterr()
    assert main(["loyalty", "reverse"]) == 0
    assert "Took back 100 points with 1 entries" in capsys.readouterr().out
    assert main(["loyalty", "check", str(customer.id)]) == 0
    assert "balance 250, ledger sum 250" in capsys.readouterr().out


def test_concurrent_earning_of_one_order_posts_once(engine):
    with platform.unit_of_work(session_factory(engine)) as s:
        customer, _ = _member(s)
        order_id = make_order(s, customer, NOW, "300").id
        customer_id = customer.id
    ids: list[int] = []
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        entry = loyalty.run_with_retry(engine, lambda s: loyalty.earn_for_order(s, platform.SYSTEM, order_id))
        ids.append(entry.id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 4 and len(set(ids)) == 1
    with session_factory(engine)() as s:
        assert loyalty.recompute_balance(s, customer_id)["balance"] == 300
        assert s.scalar(select(func.count()).select_from(LoyaltyTransaction)) == 1


def test_small_adjustments_add_up_against_the_approval_limit(session):
    """Ten +1,000 adjustments in a day need approval like one of 10,000: limits add up per person."""
    agent = make_user(session, "support_agent")
    colleague = make_user(session, "support_agent")
    first, _ = _member(session)
    second, _ = _member(session)
    assert loyalty.adjust(session, agent, first.id, 600, "Goodwill gesture").status == "posted"
    assert loyalty.adjust(session, agent, first.id, -300, "Correction of a credit").status == "posted"
    assert loyalty.adjusted_without_approval(session, agent) == 900
    queued = loyalty.adjust(session, agent, second.id, 101, "Goodwill gesture")  # 600 + 300 + 101 > 1,000
    assert queued.status == "pending" and "1,001" in queued.why_pending and "last 24 hours" in queued.why_pending
    assert loyalty.adjust(session, agent, second.id, 100, "Goodwill gesture").status == "posted"  # exactly 1,000
    # Each person has their own day: a colleague may still post.
    assert loyalty.adjust(session, colleague, first.id, 1000, "Goodwill gesture").status == "posted"
    # Adjustments older than the window no longer count.
    session.execute(LoyaltyTransaction.__table__.update()
                    .where(LoyaltyTransaction.created_by_id == agent.id)
                    .values(created_at=utcnow() - loyalty.ADJUSTMENT_WINDOW - dt.timedelta(minutes=1)))
    assert loyalty.adjusted_without_approval(session, agent) == 0
    assert loyalty.adjust(session, agent, first.id, 1000, "Goodwill gesture").status == "posted"


def test_ten_adjustments_of_a_thousand_do_not_all_post(session):
    agent = make_user(session, "support_agent")
    customer, account = _member(session)
    results = [loyalty.adjust(session, agent, customer.id, 1000, "Goodwill gesture").status for _ in range(10)]
    assert results == ["posted"] + ["pending"] * 9
    assert account.points_balance == 1000


def test_monthly_activity_from_the_refresh_and_the_month_so_far(session):
    customer, account = _member(session, enrolled=dt.datetime(2024, 12, 1))
    for kind, points, when in [("earn", 100, dt.datetime(2025, 1, 5)), ("earn", 40, dt.datetime(2025, 2, 7)),
                               ("redeem", -30, dt.datetime(2025, 2, 20)), ("earn", 10, dt.datetime(2025, 3, 2))]:
        ledger.post_entry(session, account, kind, points, platform.SYSTEM, reason="activity", now=when)
    as_of = dt.date(2025, 3, 10)
    live = loyalty.monthly_activity(session, platform.SYSTEM, months=3, as_of=as_of)
    assert [(r["month"], r["kind"], r["points"]) for r in live] == [
        ("2025-01", "earn", 100), ("2025-02", "earn", 40), ("2025-02", "redeem", -30), ("2025-03", "earn", 10)]
    assert loyalty.refresh_monthly_activity(session, as_of) == 3  # the finished months
    ledger.post_entry(session, account, "earn", 5, platform.SYSTEM, reason="later today", now=dt.datetime(2025, 3, 10, 15))
    stored = loyalty.monthly_activity(session, platform.SYSTEM, months=2, as_of=as_of)
    assert [(r["month"], r["kind"], r["points"]) for r in stored] == [
        ("2025-02", "earn", 40), ("2025-02", "redeem", -30), ("2025-03", "earn", 15)]
