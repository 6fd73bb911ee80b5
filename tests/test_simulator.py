"""The demo business: deterministic, internally consistent, and with learnable structure."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select, text

import demo
from crm_core import platform, referrals
from db.engine import session_factory
from db.models import (
    Base,
    Customer,
    LoyaltyAccount,
    LoyaltyTransaction,
    Order,
    Referral,
    ReferralReward,
)

END = dt.datetime(2026, 6, 30, 18, 0)


@pytest.fixture(scope="module")
def simulated():
    sim = demo.Simulator(1500, seed=11, end=END)
    return sim, sim.build()


def test_same_seed_same_business():
    first = demo.Simulator(200, seed=5, end=END).build()
    second = demo.Simulator(200, seed=5, end=END).build()
    assert first.keys() == second.keys()
    for name in first:
        # Password hashes are salted, so they differ run to run; everything else is identical.
        columns = [c for c in first[name].columns if c != "password_hash"]
        pd.testing.assert_frame_equal(first[name][columns], second[name][columns])
    # Without demo users nobody can sign in as simulated staff.
    assert (first["users"]["password_hash"] == demo.UNUSABLE_PASSWORD_HASH).all()
    assert not first["users"]["is_active"].any()
    other = demo.Simulator(200, seed=6, end=END).build()
    assert not first["orders"]["total"].equals(other["orders"]["total"])


@pytest.mark.parametrize("customers", [1, 5, 20])
def test_a_tiny_shop_builds_without_referrals(customers):
    """A shop this small may have no referred customer, no buyer or no loyalty member at all."""
    tables = demo.Simulator(customers, seed=3, end=END).build()
    assert len(tables["customers"]) == customers
    assert len(tables["customer_referral_program"]) <= customers


def test_demo_users_have_the_readme_passwords_hashed_with_default_parameters(monkeypatch):
    """The demo staff's hashes are argon2-cffi's defaults (RFC 9106), like every password."""
    from crm_core.platform import users

    monkeypatch.setattr(users, "_hasher", PasswordHasher.from_parameters(users.PASSWORD_HASH_PARAMETERS))
    staff = demo.Simulator(20, seed=5, end=END, demo_users=True).build()["users"]
    assert staff["is_active"].all() and len(staff) == 18  # three of each role
    hasher = PasswordHasher()
    for row in staff.itertuples():
        assert hasher.verify(row.password_hash, demo.demo_password(row.username))
        assert "m=65536,t=3,p=4" in row.password_hash
        platform.check_password(demo.demo_password(row.username), row.username)  # they meet the rules


def test_three_years_of_history_ending_at_the_end_date(simulated):
    sim, tables = simulated
    orders = tables["orders"]
    assert orders["ordered_at"].max() <= pd.Timestamp(END)
    assert orders["ordered_at"].min() >= pd.Timestamp(END - dt.timedelta(days=3 * 366))
    signups = tables["customers"].set_index("id")["signed_up_at"]
    assert (orders["ordered_at"].to_numpy() >= signups.loc[orders["customer_id"]].to_numpy()).all()


def test_order_totals_add_up(simulated):
    _, tables = simulated
    orders = tables["orders"].set_index("id")
    items = tables["order_items"].groupby("order_id")["line_total"].sum()
    assert np.allclose(items.loc[orders.index], orders["subtotal"], atol=0.005)
    assert np.allclose(orders["subtotal"] - orders["discount"] + orders["shipping"], orders["total"], atol=0.005)


def test_loyalty_ledger_is_consistent(simulated):
    _, tables = simulated
    ledger = tables["customer_loyalty_transactions"].sort_values(["account_id", "created_at", "id"])
    assert (ledger["balance_after"] >= 0).all()
    running = ledger.groupby("account_id")["points"].cumsum()
    assert (running == ledger["balance_after"]).all()
    accounts = tables["customer_loyalty_programs"].set_index("id")
    sums = ledger.groupby("account_id")["points"].sum().reindex(accounts.index, fill_value=0)
    assert (sums == accounts["points_balance"]).all()
    assert ledger["idempotency_key"].is_unique


def test_traits_leave_learnable_signals(simulated):
    sim, tables = simulated
    orders_per_customer = np.bincount(sim.order_cust, minlength=sim.n)
    satisfaction = sim.cust["satisfaction"].to_numpy()
    dropout = sim.cust["dropout"].to_numpy()
    assert np.corrcoef(satisfaction, orders_per_customer)[0, 1] > 0.1
    assert np.corrcoef(dropout, orders_per_customer)[0, 1] < -0.1
    nps = tables["customer_survey_responses"].query("survey_type == 'nps'")
    assert np.corrcoef(nps["score"], satisfaction[nps["customer_id"] - 1])[0, 1] > 0.5
    tickets = np.bincount(tables["customer_support_tickets"]["customer_id"] - 1, minlength=sim.n)
    rate = tickets / np.maximum(orders_per_customer, 1)
    buyers = orders_per_customer > 0
    assert np.corrcoef(satisfaction[buyers], rate[buyers])[0, 1] < 0
    repeaters = (orders_per_customer >= 2).sum() / buyers.sum()
    assert 0.4 < repeaters < 0.95


def test_seed_loads_every_table(engine):
    result = demo.seed_database(engine, 300, seed=3, end=END)
    assert set(result.counts) == set(demo.LOAD_ORDER)
    with engine.connect() as connection:
        for name, expected in result.counts.items():
            table = Base.metadata.tables[name]
            assert connection.scalar(select(func.count()).select_from(table)) == expected, name
        assert result.counts["customers"] == 300
        assert result.counts["users"] == 18
        # Sequences continue after the loaded ids (PostgreSQL) / rowids (SQLite).
        connection.execute(text(
            "INSERT INTO products (sku, name, category, brand, unit_price, is_active, created_at) "
            "VALUES ('NEW-1', 'New', 'Books', 'B', 1.0, true, CURRENT_TIMESTAMP)"
        ))


def test_a_failing_simulation_leaves_the_database_untouched(engine, monkeypatch):
    def broken(self):
        raise RuntimeError("simulated failure half-way")

    monkeypatch.setattr(demo.Simulator, "_support", broken)
    with pytest.raises(RuntimeError, match="half-way"):
        demo.seed_database(engine, 80, seed=1, end=END)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Customer)) == 0
    monkeypatch.undo()
    assert demo.seed_database(engine, 80, seed=1, end=END).counts["customers"] == 80


def test_seed_refuses_a_database_with_customers(engine):
    demo.seed_database(engine, 50, seed=1, end=END)
    with pytest.raises(ValueError, match="already has customers"):
        demo.seed_database(engine, 50, seed=1, end=END)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Customer)) == 50


def _referral_ledger_total(session) -> int:
    return int(session.scalar(select(func.coalesce(func.sum(LoyaltyTransaction.points), 0)).where(
        LoyaltyTransaction.source_type == "referral")))


def test_rewarded_referrals_are_paid_through_the_ledger_as_the_refresh_pays_them(engine):
    """A rewarded referral has its paid reward rows and their ledger entries, keyed as the refresh
    keys them, so the Referrals page's paid points are the ledger's and a refresh pays nothing twice."""
    demo.seed_database(engine, 400, seed=4, end=END)  # rewarded, converted and signed-up referrals
    session = session_factory(engine)()
    try:
        referral_rows = session.scalars(select(Referral)).all()
        rewards = session.scalars(select(ReferralReward)).all()
        by_referral: dict[int, list[ReferralReward]] = {}
        for reward in rewards:
            by_referral.setdefault(reward.referral_id, []).append(reward)
        settings = referrals.DEFAULT_REFERRAL_SETTINGS
        window = dt.timedelta(days=settings["return_window_days"])
        assert {r.status for r in referral_rows} == {"rewarded", "converted", "signed_up"}
        for referral in referral_rows:
            for stamp in (referral.created_at, referral.converted_at):
                assert stamp is None or stamp <= END
            first_paid = session.scalar(select(func.min(Order.ordered_at)).where(
                Order.customer_id == referral.referred_id, Order.status.in_(referrals.PAID_FRIEND_STATUSES)))
            assert referral.converted_at == first_paid, referral.id
            mine = {r.side: r for r in by_referral.get(referral.id, [])}
            if referral.status == "signed_up":
                assert not mine
                continue
            assert {r.points for r in mine.values()} <= {settings["referrer_points"], settings["friend_points"]}
            assert all(r.payable_at == referral.converted_at + window for r in mine.values())
            if referral.status == "rewarded":
                assert referral.converted_at + window <= END
                assert mine["referrer"].status == "paid" and mine["referrer"].points == referral.reward_points
                assert mine["friend"].status in ("paid", "rejected")
            else:
                assert referral.status == "converted" and referral.reward_points == 0
                # held within the return window, or past it with the referrer's reward lapsed (closed)
                due = referral.converted_at + window <= END
                assert mine["referrer"].status == ("rejected" if due else "held")
                assert mine["friend"].status in (("paid", "rejected") if due else ("held",))
            for reward in mine.values():
                assert (reward.settled_at == reward.payable_at) is (reward.status != "held")  # no allowance reached
        paid = [r for r in rewards if r.status == "paid"]
        entries = session.scalars(select(LoyaltyTransaction).where(LoyaltyTransaction.source_type == "referral")).all()
        assert sorted((e.idempotency_key, e.customer_id, e.points, e.source_id) for e in entries) == sorted(
            (f"referral:reward:{r.id}", r.customer_id, r.points, str(r.referral_id)) for r in paid)
        assert all(e.created_at <= END for e in entries)
        # The loyalty balances include the rewards.
        balances = dict(session.execute(select(LoyaltyAccount.customer_id, LoyaltyAccount.points_balance)).all())
        ledger = dict(session.execute(select(LoyaltyTransaction.customer_id, func.sum(LoyaltyTransaction.points))
                                      .group_by(LoyaltyTransaction.customer_id)).all())
        assert balances == {c: int(p) for c, p in ledger.items()} | {c: 0 for c in balances if c not in ledger}
        total = _referral_ledger_total(session)
        assert total > 0
        assert referrals.referral_kpis(session, platform.SYSTEM, END.date())["points"]["paid"] == total

        # A refresh at the end pays nothing again; one after the return window pays only the held rewards.
        held = {r.id for r in rewards if r.status == "held"}
        assert referrals.process_referrals(session, platform.SYSTEM, END)["paid"] == 0
        assert _referral_ledger_total(session) == total
        later = END + window + dt.timedelta(days=1)
        assert referrals.process_referrals(session, platform.SYSTEM, later)["paid"] > 0
        newly_paid = session.scalars(select(ReferralReward).where(ReferralReward.settled_at == later,
                                                                  ReferralReward.status == "paid")).all()
        assert {r.id for r in newly_paid} <= held
        assert _referral_ledger_total(session) == total + sum(r.points for r in newly_paid)
        assert referrals.process_referrals(session, platform.SYSTEM, later)["paid"] == 0
    finally:
        session.rollback()
        session.close()


def test_the_demo_pays_referral_rewards_within_the_programme_allowances(engine, monkeypatch):
    """With allowances the demo reaches, its rewards are settled as the refresh's payouts settle them:
    a referrer's rewards beyond the yearly allowance lapse, the programme's monthly allowance is never
    exceeded (a reward beyond it waits, held, for a month with room), and a payout run at the end
    finds nothing left that it would pay."""
    monkeypatch.setitem(referrals.DEFAULT_REFERRAL_SETTINGS, "per_referrer_yearly_points", 500)  # one a year
    monkeypatch.setitem(referrals.DEFAULT_REFERRAL_SETTINGS, "global_monthly_points", 2_000)
    demo.seed_database(engine, 1200, seed=5, end=END)
    session = session_factory(engine)()
    try:
        rewards = session.scalars(select(ReferralReward)).all()
        paid = [r for r in rewards if r.status == "paid"]
        reasons = {r.reason for r in rewards}
        assert "the referrer's yearly reward allowance is spent" in reasons
        assert "waiting: the programme's monthly allowance is spent" in reasons
        by_month: dict[str, int] = {}
        for reward in paid:
            assert reward.settled_at >= reward.payable_at
            by_month[f"{reward.settled_at:%Y-%m}"] = by_month.get(f"{reward.settled_at:%Y-%m}", 0) + reward.points
            year = [r.points for r in paid if r.side == "referrer" and r.customer_id == reward.customer_id
                    and reward.settled_at - dt.timedelta(days=365) <= r.settled_at <= reward.settled_at]
            assert sum(year) <= 500
        assert max(by_month.values()) <= 2_000
        waiting = [r for r in rewards if r.status == "held" and r.payable_at <= END]
        assert waiting and all(r.reason.startswith("waiting") for r in waiting)
        entries = session.scalars(select(LoyaltyTransaction).where(LoyaltyTransaction.source_type == "referral")).all()
        assert sorted((e.idempotency_key, e.created_at) for e in entries) == sorted(
            (f"referral:reward:{r.id}", r.settled_at) for r in paid)
        assert referrals.process_referrals(session, platform.SYSTEM, END)["paid"] == 0
    finally:
        session.rollback()
        session.close()


def test_a_larger_demo_shop_sets_a_monthly_referral_allowance_to_its_size(engine, monkeypatch):
    """The default allowance suits about 100,000 customers; a larger demo shop stores a larger one, and
    the refresh's payouts read the same settings the demo settled its rewards with."""
    monkeypatch.setattr("demo.simulator.REFERRAL_ALLOWANCE_CUSTOMERS", 500)
    demo.seed_database(engine, 1200, seed=5, end=END)
    session = session_factory(engine)()
    try:
        settings, version = referrals.get_referral_settings(session)
        default = referrals.DEFAULT_REFERRAL_SETTINGS["global_monthly_points"]
        assert (settings["global_monthly_points"], version) == (3 * default, 1)
        assert referrals.process_referrals(session, platform.SYSTEM, END)["paid"] == 0
    finally:
        session.rollback()
        session.close()


def test_an_accented_name_keeps_its_letters_in_the_mailbox(simulated):
    """'Édith Cook' is edith.cook…@, not dith.cook…@: accents go, the letters stay."""
    import re
    import unicodedata

    sim, tables = simulated
    people = tables["customers"].reset_index(drop=True)
    seconds = sim.duplicate_customer_ids()[:, 1] - 1  # positions of second records, which vary their mailbox
    people = people.drop(index=seconds)
    accented = people[people["first_name"].map(lambda name: not name.isascii())]
    assert len(accented) >= 20  # the demo's European shoppers
    for first, email in accented[["first_name", "email"]].itertuples(index=False):
        letters = re.sub(r"[^a-z]", "", unicodedata.normalize("NFKD", first.lower()).encode("ascii", "ignore").decode())
        assert email.startswith(letters + "."), (first, email)
