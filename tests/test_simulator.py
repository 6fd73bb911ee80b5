"""The demo business: deterministic, internally consistent, and with learnable structure."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select, text

import demo
from crm_core import platform
from db.models import Base, Customer

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
