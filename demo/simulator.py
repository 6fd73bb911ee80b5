"""Demo data that behaves like a business.

Every customer gets latent traits drawn once: a purchase rate and a dropout probability (the
BG/NBD story: buy at a Poisson rate while alive, drop out after any purchase with probability p),
an average spend, and a satisfaction that raises or lowers all of these and drives tickets,
complaints and survey answers. Orders, items, sessions, messages, tickets, loyalty points and the
rest are then derived from those traits with vectorised numpy, so repeat purchase, churn and value
are learnable signals rather than noise. Everything is deterministic for a seed and an end date.

The simulator only builds DataFrames; `seed_database` loads them with `db.bulk`. The shop it simulates
uses the domain's defaults: the shop country and currency, the default business calendar and SLA
targets, and the loyalty tiers.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from faker import Faker
from sqlalchemy import Engine, ForeignKeyConstraint, UniqueConstraint, func, select, text
from sqlalchemy.schema import AddConstraint, DropConstraint

from crm_core import loyalty, platform, service
from db import bulk
from db.models import Base, Customer

HISTORY_YEARS = 3
DAY = 86_400

# country: (weight, [(city, latitude, longitude), ...], phone prefix, language)
GEOGRAPHY: dict[str, tuple[float, list[tuple[str, float, float]], str, str]] = {
    "DE": (0.30, [("Berlin", 52.52, 13.40), ("Hamburg", 53.55, 9.99), ("Munich", 48.14, 11.58),
                  ("Cologne", 50.94, 6.96), ("Frankfurt", 50.11, 8.68)], "+49", "de"),
    "FR": (0.13, [("Paris", 48.86, 2.35), ("Lyon", 45.76, 4.84), ("Marseille", 43.30, 5.37),
                  ("Toulouse", 43.60, 1.44)], "+33", "fr"),
    "NL": (0.11, [("Amsterdam", 52.37, 4.90), ("Rotterdam", 51.92, 4.48), ("Utrecht", 52.09, 5.12)],
           "+31", "nl"),
    "GB": (0.10, [("London", 51.51, -0.13), ("Manchester", 53.48, -2.24), ("Leeds", 53.80, -1.55)],
           "+44", "en"),
    "ES": (0.08, [("Madrid", 40.42, -3.70), ("Barcelona", 41.39, 2.17), ("Valencia", 39.47, -0.38)],
           "+34", "es"),
    "IT": (0.08, [("Rome", 41.90, 12.50), ("Milan", 45.46, 9.19), ("Turin", 45.07, 7.69)], "+39", "it"),
    "AT": (0.06, [("Vienna", 48.21, 16.37), ("Graz", 47.07, 15.44)], "+43", "de"),
    "BE": (0.05, [("Brussels", 50.85, 4.35), ("Antwerp", 51.22, 4.40)], "+32", "nl"),
    "PL": (0.05, [("Warsaw", 52.23, 21.01), ("Krakow", 50.06, 19.94)], "+48", "pl"),
    "US": (0.04, [("New York", 40.71, -74.01), ("Chicago", 41.88, -87.63)], "+1", "en"),
}

CATEGORIES: dict[str, tuple[float, float]] = {  # category: (median price, price spread)
    "Electronics": (120.0, 0.8), "Home & Kitchen": (45.0, 0.6), "Fashion": (40.0, 0.5),
    "Beauty": (22.0, 0.5), "Sports & Outdoors": (55.0, 0.6), "Books": (15.0, 0.3),
    "Toys & Games": (30.0, 0.5), "Garden": (38.0, 0.6), "Grocery": (12.0, 0.4),
    "Pet Supplies": (25.0, 0.5), "Health": (20.0, 0.5), "Jewelry": (90.0, 0.8),
}
ACQUISITION = {
    "organic_search": 0.26, "paid_search": 0.20, "social": 0.16, "email": 0.06, "referral": 0.06,
    "affiliate": 0.08, "direct": 0.14, "marketplace": 0.04,
}
ROLE_USERNAMES = {
    "admin": "admin", "analyst": "analyst", "success_manager": "csm", "support_agent": "agent",
    "executive": "exec",
}


def demo_password(username: str) -> str:
    """Demo staff passwords, listed in the README: the username followed by '-pass'."""
    return f"{username}-pass"


@dataclass
class SeedResult:
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _choice(rng: np.random.Generator, options: dict[str, float] | list[str], size: int,
            p: list[float] | None = None) -> np.ndarray:
    if isinstance(options, dict):
        keys = list(options)
        weights = np.array(list(options.values()), dtype=float)
        return np.array(keys, dtype=object)[rng.choice(len(keys), size=size, p=weights / weights.sum())]
    idx = rng.choice(len(options), size=size, p=p)
    return np.array(options, dtype=object)[idx]


def _to_datetime(base: np.datetime64, seconds: np.ndarray) -> pd.Series:
    return pd.Series(base + seconds.astype("int64").astype("timedelta64[s]")).astype("datetime64[us]")


def _nullable_int(values: np.ndarray, keep: np.ndarray) -> pd.Series:
    """Integers where `keep` is true, NULL elsewhere."""
    return pd.Series(np.asarray(values, dtype=np.int64), dtype="Int64").where(keep)


def _season(day_of_year: np.ndarray, weekday: np.ndarray) -> np.ndarray:
    """Demand multiplier: a summer dip, a November/December peak, busier weekends."""
    yearly = 1.0 + 0.18 * np.cos(2 * np.pi * (day_of_year - 15) / 365.25)
    peak = 1.0 + 0.6 * np.exp(-0.5 * ((day_of_year - 335) / 12.0) ** 2)
    weekly = np.where(weekday >= 5, 1.15, 1.0) * np.where(weekday == 0, 1.05, 1.0)
    return yearly * peak * weekly


class Simulator:
    """Builds the demo tables as DataFrames for `n_customers`, ending at `end`."""

    def __init__(self, n_customers: int, seed: int = 7, end: dt.datetime | None = None):
        if n_customers < 1:
            raise ValueError("n_customers must be at least 1")
        self.n = n_customers
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        end = end or dt.datetime.now().replace(microsecond=0)
        self.end = end
        self.start = end - dt.timedelta(days=round(365.25 * HISTORY_YEARS))
        self.base = np.datetime64(self.start, "s")
        self.span = (self.end - self.start).total_seconds()
        self.faker = Faker(["en_US", "de_DE", "fr_FR", "en_GB"])
        self.faker.seed_instance(seed)
        self.tables: dict[str, pd.DataFrame] = {}

    # ------------------------------------------------------------------ helpers
    def _pool(self, make: Callable[[], str], size: int) -> np.ndarray:
        return np.array(sorted({make() for _ in range(size)}), dtype=object)

    def _days(self, seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dates = (self.base + seconds.astype("int64").astype("timedelta64[s]")).astype("datetime64[D]")
        day_of_year = (dates - dates.astype("datetime64[Y]")).astype(int) + 1
        weekday = (dates.astype(int) + 3) % 7  # 1970-01-01 was a Thursday
        return day_of_year, weekday

    # ------------------------------------------------------------------ build
    def build(self) -> dict[str, pd.DataFrame]:
        for _ in self.iter_tables():
            pass
        return self.tables

    def iter_tables(self) -> Iterator[tuple[str, pd.DataFrame]]:
        """Build step by step, yielding each table as soon as it is complete."""
        # Plain object strings: pandas' Arrow-backed strings cost more than they save here
        # (a third of the build time). The option is deprecated for pandas 4, hence the filter.
        steps = (
            self._users, self._products, self._customers, self._orders, self._items, self._sessions,
            self._communications, self._support, self._surveys, self._loyalty, self._privacy,
            self._addresses_and_payments, self._social, self._referrals, self._risk,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message=".*infer_string.*")
            with pd.option_context("future.infer_string", False):
                for step in steps:
                    done = set(self.tables)
                    step()
                    for name in [n for n in self.tables if n not in done]:
                        yield name, self.tables[name]

    def _users(self) -> None:
        from argon2 import PasswordHasher

        # Demo accounts only: cheap argon2 parameters keep seeding fast; real accounts use defaults.
        hasher = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
        rows = []
        for role, stem in ROLE_USERNAMES.items():
            for k in range(1, 4):
                username = f"{stem}{k}"
                rows.append({
                    "username": username,
                    "full_name": self.faker.name(),
                    "email": f"{username}@shop.example",
                    "role": role,
                    "password_hash": hasher.hash(demo_password(username)),
                    "is_active": True,
                    "failed_login_count": 0,
                    "created_at": self.start,
                    "version": 1,
                })
        users = pd.DataFrame(rows)
        users.insert(0, "id", np.arange(1, len(users) + 1))
        users["created_at"] = pd.to_datetime(users["created_at"])
        self.tables["users"] = users
        self.agent_ids = users.loc[users.role == "support_agent", "id"].to_numpy()
        self.manager_ids = users.loc[users.role == "success_manager", "id"].to_numpy()

        slas = []
        for i, (priority, (first, nxt, resolution)) in enumerate(service.DEFAULT_POLICY_MINUTES.items(), 1):
            slas.append({
                "id": i, "name": f"Standard {priority}", "priority": priority,
                "first_response_minutes": first, "next_response_minutes": nxt,
                "resolution_minutes": resolution, "calendar": service.DEFAULT_CALENDAR, "is_active": True,
                "created_at": pd.Timestamp(self.start),
            })
        self.tables["customer_service_level_agreements"] = pd.DataFrame(slas)

    def _products(self) -> None:
        rng = self.rng
        brands = self._pool(lambda: self.faker.last_name() + " " + rng.choice(
            ["Co", "Labs", "Works", "Goods", "Studio", "& Sons"]), 80)
        rows = []
        pid = 1
        for category, (median, spread) in CATEGORIES.items():
            count = 40
            prices = np.round(median * rng.lognormal(0, spread, count), 2).clip(1.99, None)
            for k in range(count):
                noun = self.faker.word().capitalize()
                rows.append({
                    "id": pid, "sku": f"SKU-{pid:05d}", "name": f"{noun} {category.split()[0]} {k + 1}",
                    "category": category, "brand": str(brands[rng.integers(len(brands))]),
                    "unit_price": float(prices[k]), "unit_cost": float(round(prices[k] * rng.uniform(0.35, 0.7), 2)),
                    "is_active": True, "created_at": pd.Timestamp(self.start),
                })
                pid += 1
        self.tables["products"] = pd.DataFrame(rows)

    def _customers(self) -> None:
        rng, n = self.rng, self.n
        ids = np.arange(1, n + 1)
        # Signups grow over time, with the shop's seasonality.
        days = int(self.span // DAY)
        day_idx = np.arange(days)
        doy, wd = self._days(day_idx * DAY)
        weights = (0.35 + day_idx / days) * _season(doy, wd)
        signup_day = np.sort(rng.choice(days, size=n, p=weights / weights.sum()))
        signup = signup_day * DAY + rng.integers(6 * 3600, 23 * 3600, n)

        countries = list(GEOGRAPHY)
        cweights = np.array([GEOGRAPHY[c][0] for c in countries])
        country_idx = rng.choice(len(countries), n, p=cweights / cweights.sum())
        country = np.array(countries, dtype=object)[country_idx]
        city_pick = rng.random(n)
        city, lat, lon, lang, phone_prefix = (np.empty(n, dtype=object) for _ in range(5))
        for ci, code in enumerate(countries):
            mask = country_idx == ci
            cities = GEOGRAPHY[code][1]
            pick = (city_pick[mask] * len(cities)).astype(int)
            city[mask] = np.array([c[0] for c in cities], dtype=object)[pick]
            lat[mask] = np.array([c[1] for c in cities])[pick]
            lon[mask] = np.array([c[2] for c in cities])[pick]
            lang[mask] = GEOGRAPHY[code][3]
            phone_prefix[mask] = GEOGRAPHY[code][2]

        gender = _choice(rng, {"female": 0.49, "male": 0.47, "non_binary": 0.02, "unknown": 0.02}, n)
        female_names = self._pool(self.faker.first_name_female, 600)
        male_names = self._pool(self.faker.first_name_male, 600)
        last_names = self._pool(self.faker.last_name, 1500)
        first = np.where(gender == "female", female_names[rng.integers(len(female_names), size=n)],
                         male_names[rng.integers(len(male_names), size=n)])
        last = last_names[rng.integers(len(last_names), size=n)]
        domains = np.array(["mail.example", "post.example", "inbox.example", "web.example"], dtype=object)
        local = pd.Series(first + "." + last).str.lower().str.replace(r"[^a-z.]", "", regex=True)
        email = (local + pd.Series(ids.astype(str)) + "@" + pd.Series(domains[ids % len(domains)])).to_numpy()
        phone = phone_prefix + " " + pd.Series(rng.integers(100_000_000, 999_999_999, n).astype(str)).to_numpy()
        age = np.clip(rng.gamma(6.0, 6.5, n) + 16, 18, 90).astype(int)
        dob = (np.datetime64(self.end.date()) - (age * 365.25 + rng.integers(0, 365, n)).astype("timedelta64[D]"))

        # Latent traits: satisfaction drives purchase rate, dropout, tickets and survey answers.
        satisfaction = rng.beta(5.0, 2.0, n)
        rate = rng.gamma(1.6, 7.5, n) * (0.55 + 0.9 * satisfaction)  # purchases a year while alive
        dropout = np.clip(rng.beta(1.2, 13.0, n) * (1.9 - 1.5 * satisfaction), 0.005, 0.9)
        spend = rng.lognormal(0.0, 0.45, n)  # quantity / premium propensity
        preferred = rng.integers(len(CATEGORIES), size=n)
        channel = _choice(rng, ACQUISITION, n)
        status = _choice(rng, {"active": 0.985, "suspended": 0.004, "closed": 0.011}, n)

        self.cust = pd.DataFrame({
            "signup": signup, "satisfaction": satisfaction, "rate": rate, "dropout": dropout,
            "spend": spend, "preferred": preferred, "lat": lat.astype(float), "lon": lon.astype(float),
        })
        # The most valuable tenth of customers get a success manager who owns the relationship.
        value = rate * spend
        managed = value >= np.quantile(value, 0.9)
        manager = np.where(managed, self.manager_ids[ids % len(self.manager_ids)], 0)
        self.tables["customers"] = pd.DataFrame({
            "id": ids,
            "account_manager_id": pd.array(np.where(managed, manager, None), dtype="Int64"),
            "external_id": pd.Series(ids).map(lambda i: f"{i:08d}"),
            "first_name": first, "last_name": last, "email": email, "phone": phone,
            "date_of_birth": pd.Series(dob).dt.date,
            "gender": gender, "country_code": country, "city": city, "preferred_language": lang,
            "acquisition_channel": channel, "status": status,
            "signed_up_at": _to_datetime(self.base, signup),
            "created_at": _to_datetime(self.base, signup),
            "updated_at": _to_datetime(self.base, signup),
            "version": 1,
        })

    def _orders(self) -> None:
        rng, c = self.rng, self.cust
        n = self.n
        buys = rng.random(n) < 0.88  # the rest stay prospects
        first_delay = rng.exponential(6.0, n) * DAY
        t = c.signup.to_numpy() + first_delay
        alive = buys & (t < self.span)
        cust_parts, time_parts = [], []
        rate_per_sec = c.rate.to_numpy() / (365.25 * DAY)
        dropout = c.dropout.to_numpy()
        idx = np.arange(n)
        while alive.any():
            live = idx[alive]
            cust_parts.append(live)
            time_parts.append(t[live])
            still = rng.random(len(live)) >= dropout[live]
            doy, wd = self._days(t[live])
            gap = rng.exponential(1.0, len(live)) / (rate_per_sec[live] * _season(doy, wd))
            t[live] = t[live] + gap
            alive[live] = still & (t[live] < self.span)
        cust_idx = np.concatenate(cust_parts) if cust_parts else np.array([], dtype=int)
        when = np.concatenate(time_parts) if time_parts else np.array([], dtype=float)
        order = np.lexsort((cust_idx, when))
        cust_idx, when = cust_idx[order], when[order]
        m = len(when)
        age_days = (self.span - when) / DAY
        status = _choice(rng, {"delivered": 0.94, "cancelled": 0.03, "returned": 0.02, "refunded": 0.01}, m)
        status = np.where(age_days < 2, "paid", np.where(age_days < 5, np.where(status == "delivered", "shipped", status), status))
        self.order_cust = cust_idx
        self.order_time = when
        self.buyers = np.flatnonzero(np.bincount(cust_idx, minlength=n))
        self.orders = pd.DataFrame({
            "id": np.arange(1, m + 1),
            "customer_id": cust_idx + 1,
            "ordered_at": _to_datetime(self.base, when),
            "status": status,
            "channel": _choice(rng, {"web": 0.55, "mobile": 0.35, "marketplace": 0.05, "store": 0.03, "phone": 0.02}, m),
            "currency": platform.SHOP_CURRENCY,
        })
        self.orders.insert(1, "order_number", "SO-" + pd.Series(np.arange(1, m + 1) + 100_000).astype(str))

    def _items(self) -> None:
        rng = self.rng
        products = self.tables["products"]
        spend = self.cust.spend.to_numpy()[self.order_cust]
        m = len(self.order_cust)
        n_items = np.clip(1 + rng.poisson(0.25 + 0.3 * spend), 1, 6)
        order_of_item = np.repeat(np.arange(m), n_items)
        k = len(order_of_item)
        preferred = self.cust.preferred.to_numpy()[self.order_cust][order_of_item]
        category = np.where(rng.random(k) < 0.6, preferred, rng.integers(len(CATEGORIES), size=k))
        per_cat = 40
        product_idx = category * per_cat + rng.integers(per_cat, size=k)
        price_cents = np.round(products.unit_price.to_numpy()[product_idx] * 100).astype(np.int64)
        quantity = 1 + rng.poisson(0.25 * spend[order_of_item])
        line_cents = price_cents * quantity
        subtotal = np.bincount(order_of_item, weights=line_cents, minlength=m).astype(np.int64)
        discount = np.where(rng.random(m) < 0.12, np.round(subtotal * 0.1), 0).astype(np.int64)
        shipping = np.where(subtotal - discount < 5000, 495, 0)
        total = subtotal - discount + shipping
        self.order_total_cents = total
        self.order_category = category  # per item
        self.item_order = order_of_item
        o = self.orders
        o["subtotal"] = subtotal / 100
        o["discount"] = discount / 100
        o["shipping"] = shipping / 100
        o["total"] = total / 100
        o["item_count"] = n_items
        self.tables["orders"] = o
        self.tables["order_items"] = pd.DataFrame({
            "id": np.arange(1, k + 1), "order_id": order_of_item + 1, "product_id": product_idx + 1,
            "quantity": quantity, "unit_price": price_cents / 100, "line_total": line_cents / 100,
        })

    def _sessions(self) -> None:
        rng = self.rng
        m = len(self.order_cust)
        with_session = rng.random(m) < 0.4
        conv_cust = self.order_cust[with_session]
        conv_pages = 3 + rng.poisson(6, len(conv_cust))
        conv_start = self.order_time[with_session] - conv_pages * rng.uniform(30, 90, len(conv_cust))
        # Browsing sessions: more while a customer is engaged, a few after they drift away.
        browse_cust = rng.choice(self.order_cust, size=m // 8) if m else np.array([], dtype=int)
        signup = self.cust.signup.to_numpy()[browse_cust]
        browse_start = signup + rng.random(len(browse_cust)) * (self.span - signup)
        browse_pages = 1 + rng.poisson(3, len(browse_cust))
        cust = np.concatenate([conv_cust, browse_cust])
        start = np.clip(np.concatenate([conv_start, browse_start]), 0, self.span - 60)
        pages = np.concatenate([conv_pages, browse_pages])
        converted = np.concatenate([np.ones(len(conv_cust), bool), np.zeros(len(browse_cust), bool)])
        order = np.argsort(start, kind="stable")
        s = len(cust)
        self.tables["web_sessions"] = pd.DataFrame({
            "id": np.arange(1, s + 1),
            "customer_id": cust[order] + 1,
            "started_at": _to_datetime(self.base, start[order]),
            "duration_seconds": (pages[order] * rng.gamma(2.0, 25.0, s)).astype(int),
            "page_views": pages[order],
            "source": _choice(rng, {"direct": 0.3, "organic": 0.28, "paid_search": 0.16, "social": 0.1,
                                    "email": 0.11, "referral": 0.05}, s),
            "device": _choice(rng, {"desktop": 0.45, "mobile": 0.48, "tablet": 0.07}, s),
            "converted": converted[order],
        })

    def _communications(self) -> None:
        rng, c = self.rng, self.cust
        per_customer = rng.poisson(2.5, self.n)
        cust = np.repeat(np.arange(self.n), per_customer)
        k = len(cust)
        signup = c.signup.to_numpy()[cust]
        sent = signup + rng.random(k) * (self.span - signup)
        engagement = c.satisfaction.to_numpy()[cust] * np.clip(c.rate.to_numpy()[cust] / 8, 0.2, 1.2)
        channel = _choice(rng, {"email": 0.8, "sms": 0.1, "push": 0.1}, k)
        u = rng.random(k)
        bounced = u < 0.02
        failed = (u >= 0.02) & (u < 0.025)
        delivered = ~(bounced | failed)
        opened = delivered & (rng.random(k) < np.clip(0.1 + 0.45 * engagement, 0, 0.9))
        clicked = opened & (rng.random(k) < 0.3)
        replied = clicked & (rng.random(k) < 0.03)
        status = np.select([replied, clicked, opened, delivered, bounced], ["replied", "clicked", "opened", "delivered", "bounced"], "failed")
        month = pd.Series(_to_datetime(self.base, sent)).dt.strftime("%Y-%m")
        themes = np.array(["Newsletter", "New arrivals", "Weekend sale", "Recommendations"], dtype=object)
        templates = np.array(["newsletter", "new_arrivals", "weekend_sale", "recommendations"], dtype=object)
        theme = rng.integers(len(themes), size=k)
        campaign = themes[theme] + " " + month.to_numpy()
        sent_dt = _to_datetime(self.base, sent)

        def stage(mask: np.ndarray, delay_hours: float) -> pd.Series:
            offsets = np.where(mask, rng.exponential(delay_hours * 3600, k), np.nan)
            out = sent_dt + pd.to_timedelta(offsets, unit="s")
            return out.where(mask)

        order = np.argsort(sent, kind="stable")
        frame = pd.DataFrame({
            "customer_id": cust + 1, "channel": channel, "direction": "outbound", "status": status,
            "campaign": campaign, "template": templates[theme],
            "subject": campaign, "sent_at": sent_dt,
            "delivered_at": stage(delivered, 0.05), "opened_at": stage(opened, 6),
            "clicked_at": stage(clicked, 7), "replied_at": stage(replied, 30),
        }).iloc[order].reset_index(drop=True)
        frame.insert(0, "id", np.arange(1, k + 1))
        self.tables["customer_communication_history"] = frame

    def _support(self) -> None:
        rng, c = self.rng, self.cust
        sat = c.satisfaction.to_numpy()[self.order_cust]
        p_ticket = 0.02 + 0.16 * (1 - sat) ** 2
        has_ticket = rng.random(len(sat)) < p_ticket
        order_idx = np.flatnonzero(has_ticket)
        k = len(order_idx)
        created = np.minimum(self.order_time[order_idx] + rng.uniform(0.2, 12, k) * DAY, self.span - 3600 * rng.uniform(1, 48, k))
        created = np.maximum(created, self.order_time[order_idx] + 60)
        created = np.minimum(created, self.span - 60)
        age_days = (self.span - created) / DAY
        priority = _choice(rng, {"low": 0.2, "normal": 0.5, "high": 0.2, "urgent": 0.08, "critical": 0.02}, k)
        category = _choice(rng, {"order": 0.2, "delivery": 0.3, "returns": 0.2, "billing": 0.1, "product": 0.15, "account": 0.05}, k)
        first_response = created + rng.exponential(5 * 3600, k)
        resolved = created + rng.exponential(2.5 * DAY, k) + 3600
        done = resolved < self.span
        open_status = _choice(rng, {"new": 0.3, "open": 0.4, "pending_customer": 0.2, "on_hold": 0.1}, k)
        status = np.where(done, np.where(age_days > 10, "closed", "resolved"), open_status)
        responded = first_response < self.span
        responded &= status != "new"
        sla = self.tables["customer_service_level_agreements"].set_index("priority")
        first_due = created + sla.loc[priority, "first_response_minutes"].to_numpy() * 60
        resolution_due = created + sla.loc[priority, "resolution_minutes"].to_numpy() * 60
        breached = (np.where(responded, first_response, self.span) > first_due) | (np.where(done, resolved, self.span) > resolution_due)
        sat_t = sat[order_idx]
        csat = np.where(done & (rng.random(k) < 0.6), np.clip(np.round(1 + 4 * sat_t + rng.normal(0, 0.7, k)), 1, 5), np.nan)
        subjects = {
            "order": "Question about my order", "delivery": "Parcel has not arrived", "returns": "Return request",
            "billing": "Charged twice", "product": "Product stopped working", "account": "Cannot sign in",
        }
        ticket_ids = np.arange(1, k + 1)
        cust_ids = self.order_cust[order_idx] + 1
        tickets = pd.DataFrame({
            "id": ticket_ids,
            "ticket_number": "T-" + pd.Series(ticket_ids + 10_000).astype(str),
            "customer_id": cust_ids,
            "subject": pd.Series(category).map(subjects).to_numpy(),
            "description": "Customer contacted support about order " + self.orders["order_number"].to_numpy()[order_idx],
            "category": category, "priority": priority, "status": status,
            "channel": _choice(rng, {"email": 0.5, "chat": 0.3, "phone": 0.15, "web": 0.05}, k),
            "department": np.where(category == "billing", "Billing", "Customer care"),
            "assignee_id": np.where(status == "new", np.nan, self.agent_ids[rng.integers(len(self.agent_ids), size=k)]),
            "order_id": order_idx + 1,
            "sla_id": sla.loc[priority, "id"].to_numpy(),
            "first_response_due_at": _to_datetime(self.base, first_due),
            "resolution_due_at": _to_datetime(self.base, resolution_due),
            "first_responded_at": _to_datetime(self.base, first_response).where(responded),
            "resolved_at": _to_datetime(self.base, resolved).where(done),
            "closed_at": _to_datetime(self.base, resolved + DAY * 7).where(status == "closed"),
            "sla_breached": breached, "csat_rating": csat,
            "created_at": _to_datetime(self.base, created),
            "updated_at": _to_datetime(self.base, np.where(done, resolved, created)),
            "version": 1,
        })
        tickets["assignee_id"] = tickets["assignee_id"].astype("Int64")
        tickets["csat_rating"] = tickets["csat_rating"].astype("Int64")
        self.tables["customer_support_tickets"] = tickets

        # Conversation: the customer's message, the agent's reply, sometimes more.
        n_resp = np.where(responded, 2 + rng.poisson(0.7, k), 1)
        t_idx = np.repeat(np.arange(k), n_resp)
        pos = np.arange(len(t_idx)) - np.repeat(np.cumsum(n_resp) - n_resp, n_resp)
        agent_turn = pos % 2 == 1
        when = created[t_idx] + np.where(pos == 0, 0, first_response[t_idx] - created[t_idx] + (pos - 1) * rng.exponential(8 * 3600, len(t_idx)))
        when = np.minimum(when, self.span - 1)
        internal = agent_turn & (rng.random(len(t_idx)) < 0.1)
        self.tables["customer_support_ticket_responses"] = pd.DataFrame({
            "id": np.arange(1, len(t_idx) + 1), "ticket_id": t_idx + 1,
            "author_kind": np.where(agent_turn, "agent", "customer"),
            "author_user_id": _nullable_int(tickets["assignee_id"].fillna(self.agent_ids[0]).to_numpy()[t_idx], agent_turn),
            "body": np.where(pos == 0, tickets["description"].to_numpy()[t_idx],
                             np.where(agent_turn, "Thanks for reaching out, we are looking into it.", "Any news on this?")),
            "is_internal": internal, "is_read": True,
            "created_at": _to_datetime(self.base, when),
        })

        # Complaints: the unhappiest tickets become formal complaints.
        complaint = (rng.random(k) < 0.1 + 0.5 * (1 - sat_t) ** 2) & np.isin(category, ["delivery", "product", "billing", "returns"])
        ci = np.flatnonzero(complaint)
        q = len(ci)
        severity = _choice(rng, {"low": 0.3, "medium": 0.45, "high": 0.2, "critical": 0.05}, q)
        comp_kind = np.where(done[ci], _choice(rng, {"none": 0.35, "refund": 0.25, "voucher": 0.25, "points": 0.1, "replacement": 0.05}, q), "none")
        amount = np.where(comp_kind == "none", 0, np.round(np.minimum(self.order_total_cents[order_idx[ci]] / 100 * rng.uniform(0.1, 0.5, q), 200), 2))
        self.tables["customer_complaint_management"] = pd.DataFrame({
            "id": np.arange(1, q + 1), "customer_id": cust_ids[ci], "ticket_id": ticket_ids[ci],
            "order_id": order_idx[ci] + 1, "category": category[ci], "severity": severity,
            "description": "Formal complaint: " + pd.Series(category[ci]).map(subjects).to_numpy(),
            "status": np.where(done[ci], "resolved", np.where(severity == "critical", "escalated", "investigating")),
            "resolution": np.where(done[ci], "Resolved with the customer", None),
            "compensation_kind": comp_kind, "compensation_amount": amount,
            "approved_by_id": _nullable_int(self.manager_ids[rng.integers(len(self.manager_ids), size=q)], comp_kind != "none"),
            "resolution_due_at": _to_datetime(self.base, created[ci] + 5 * DAY),
            "resolved_at": _to_datetime(self.base, resolved[ci]).where(done[ci]),
            "satisfaction": _nullable_int(np.clip(np.round(1 + 4 * sat_t[ci] + rng.normal(0, 1, q)), 1, 5), done[ci]),
            "escalation_level": np.where(severity == "critical", 1, 0),
            "created_at": _to_datetime(self.base, created[ci]),
            "updated_at": _to_datetime(self.base, np.where(done[ci], resolved[ci], created[ci])),
            "version": 1,
        })
        self.ticket_created = created
        self.ticket_csat = csat

    def _surveys(self) -> None:
        rng, c = self.rng, self.cust
        buyers = self.buyers
        responders = buyers[rng.random(len(buyers)) < 0.35]
        r = len(responders)
        first_order = pd.Series(self.order_time).groupby(self.order_cust).min()
        start = first_order.reindex(responders).to_numpy() + 7 * DAY
        when = np.minimum(start + rng.random(r) * np.maximum(self.span - start, 0), self.span - 60)
        sat = c.satisfaction.to_numpy()[responders]
        score = np.clip(np.round(11 * sat - 0.5 + rng.normal(0, 1.2, r)), 0, 10).astype(int)
        comments = np.select([score >= 9, score >= 7], ["Great service, fast delivery!", "Good overall, delivery could be faster."],
                             "Disappointed: late delivery and slow support.")
        nps = pd.DataFrame({"customer_id": responders + 1, "survey_type": "nps", "score": score,
                            "comment": comments, "ticket_id": pd.array([None] * r, dtype="Int64"),
                            "responded_at": _to_datetime(self.base, when)})
        tickets = self.tables["customer_support_tickets"]
        rated = tickets["csat_rating"].notna().to_numpy()
        csat = pd.DataFrame({
            "customer_id": tickets["customer_id"].to_numpy()[rated], "survey_type": "csat",
            "score": tickets["csat_rating"].to_numpy()[rated].astype(int), "comment": None,
            "ticket_id": pd.array(tickets["id"].to_numpy()[rated], dtype="Int64"),
            "responded_at": tickets["resolved_at"][rated].to_numpy(),
        })
        surveys = pd.concat([nps, csat], ignore_index=True).sort_values("responded_at", kind="stable").reset_index(drop=True)
        surveys.insert(0, "id", np.arange(1, len(surveys) + 1))
        surveys["responded_at"] = pd.to_datetime(surveys["responded_at"]).astype("datetime64[us]")
        self.tables["customer_survey_responses"] = surveys

    def _loyalty(self) -> None:
        rng, c = self.rng, self.cust
        buyers = self.buyers
        p_enrol = np.clip(0.15 + 0.02 * c.rate.to_numpy()[buyers], 0, 0.6)
        members = buyers[rng.random(len(buyers)) < p_enrol]
        a = len(members)
        account_of = np.full(self.n, -1)
        account_of[members] = np.arange(a)
        enrolled = c.signup.to_numpy()[members] + rng.exponential(20 * DAY, a)
        enrolled = np.minimum(enrolled, self.span - 60)

        statuses = self.orders["status"].to_numpy()
        acc = account_of[self.order_cust]
        earning = (acc >= 0) & np.isin(statuses, ["paid", "shipped", "delivered"])
        earning &= self.order_time >= enrolled[np.maximum(acc, 0)]
        oi = np.flatnonzero(earning)
        earn = pd.DataFrame({
            "acc": acc[oi], "when": self.order_time[oi] + 60, "points": (self.order_total_cents[oi] // 100).astype(np.int64),
            "kind": "earn", "source_type": "order", "source_id": (oi + 1).astype(str),
            "reason": "Points for order",
        })
        earn = earn[earn.points > 0]
        earn["cum"] = earn.groupby("acc")["points"].cumsum()
        # One redemption of 500 points the day after a member first passes 1,000 points.
        first_k = earn[earn.cum >= 1000].groupby("acc").head(1)
        redeem = pd.DataFrame({
            "acc": first_k.acc.to_numpy(), "when": np.minimum(first_k["when"].to_numpy() + DAY, self.span - 1),
            "points": -500, "kind": "redeem", "source_type": "redemption",
            "source_id": first_k.acc.astype(str).to_numpy(), "reason": "Voucher redemption",
        })
        ledger = pd.concat([earn.drop(columns="cum"), redeem], ignore_index=True).sort_values(["acc", "when"], kind="stable")
        ledger["balance_after"] = ledger.groupby("acc")["points"].cumsum()
        ledger = ledger.sort_values("when", kind="stable").reset_index(drop=True)
        ledger["id"] = np.arange(1, len(ledger) + 1)
        ledger["idempotency_key"] = ledger["kind"] + ":" + ledger["source_type"] + ":" + ledger["source_id"]
        lifetime = earn.groupby("acc")["points"].sum().reindex(np.arange(a), fill_value=0).to_numpy()
        balance = ledger.groupby("acc")["points"].sum().reindex(np.arange(a), fill_value=0).to_numpy()
        thresholds = np.array(list(loyalty.DEFAULT_TIER_THRESHOLDS.values()))
        tier_names = np.array(list(loyalty.DEFAULT_TIER_THRESHOLDS), dtype=object)
        tier_idx = np.searchsorted(thresholds, lifetime, side="right") - 1
        # Tier history: the first moment the running lifetime total crossed each threshold.
        changes = [pd.DataFrame({"acc": np.arange(a), "when": enrolled, "from_tier": None, "to_tier": "bronze"})]
        for level in range(1, len(thresholds)):
            crossed = earn[earn.cum >= thresholds[level]].groupby("acc").head(1)
            changes.append(pd.DataFrame({"acc": crossed.acc.to_numpy(), "when": crossed["when"].to_numpy(),
                                         "from_tier": tier_names[level - 1], "to_tier": tier_names[level]}))
        tier_changes = pd.concat(changes, ignore_index=True).sort_values("when", kind="stable").reset_index(drop=True)
        last_change = tier_changes.groupby("acc")["when"].max().reindex(np.arange(a)).to_numpy()
        self.tables["customer_loyalty_programs"] = pd.DataFrame({
            "id": np.arange(1, a + 1), "customer_id": members + 1, "program": "Rewards",
            "tier": tier_names[tier_idx], "points_balance": balance, "lifetime_points": lifetime,
            "status": "active", "enrolled_at": _to_datetime(self.base, enrolled),
            "tier_updated_at": _to_datetime(self.base, last_change), "version": 1,
        })
        self.tables["customer_loyalty_transactions"] = pd.DataFrame({
            "id": ledger["id"], "account_id": ledger["acc"] + 1, "customer_id": members[ledger["acc"].to_numpy()] + 1,
            "kind": ledger["kind"], "points": ledger["points"], "balance_after": ledger["balance_after"],
            "source_type": ledger["source_type"], "source_id": ledger["source_id"],
            "idempotency_key": ledger["idempotency_key"], "reason": ledger["reason"],
            "created_at": _to_datetime(self.base, ledger["when"].to_numpy()),
        })

        self.tables["customer_loyalty_tier_changes"] = pd.DataFrame({
            "id": np.arange(1, len(tier_changes) + 1), "account_id": tier_changes.acc.to_numpy() + 1,
            "from_tier": tier_changes.from_tier.to_numpy(), "to_tier": tier_changes.to_tier.to_numpy(),
            "changed_at": _to_datetime(self.base, tier_changes["when"].to_numpy()),
        })

    def _privacy(self) -> None:
        rng, c = self.rng, self.cust
        n = self.n
        signup = c.signup.to_numpy()
        email_opt = rng.random(n) < 0.62
        sms_opt = rng.random(n) < 0.22
        push_opt = rng.random(n) < 0.35
        analytics = rng.random(n) < 0.8
        profiling = rng.random(n) < 0.6
        withdrew = email_opt & (rng.random(n) < 0.08)
        withdraw_at = signup + rng.random(n) * (self.span - signup)
        ids = np.arange(n)
        parts = [
            (ids, "marketing_email", email_opt, signup),
            (ids, "analytics", analytics, signup),
            (ids, "profiling", profiling, signup),
            (ids[withdrew], "marketing_email", np.zeros(withdrew.sum(), bool), withdraw_at[withdrew]),
        ]
        frames = [pd.DataFrame({"customer_id": i + 1, "purpose": purpose, "granted": granted, "when": when,
                                "source": "signup_form" if purpose != "marketing_email" or len(i) == n else "preference_center"})
                  for i, purpose, granted, when in parts]
        consents = pd.concat(frames, ignore_index=True).sort_values("when", kind="stable").reset_index(drop=True)
        self.tables["customer_gdpr_compliance"] = pd.DataFrame({
            "id": np.arange(1, len(consents) + 1), "customer_id": consents.customer_id,
            "purpose": consents.purpose, "granted": consents.granted, "source": consents.source,
            "legal_basis": "consent", "recorded_at": _to_datetime(self.base, consents["when"].to_numpy()),
        })
        category_names = np.array(list(CATEGORIES), dtype=object)
        self.tables["customer_preference_centers"] = pd.DataFrame({
            "customer_id": ids + 1, "email_opt_in": email_opt & ~withdrew, "sms_opt_in": sms_opt,
            "push_opt_in": push_opt, "phone_opt_in": rng.random(n) < 0.1,
            "contact_frequency": _choice(rng, {"weekly": 0.5, "monthly": 0.35, "daily": 0.05, "never": 0.1}, n),
            "preferred_channel": _choice(rng, {"email": 0.7, "sms": 0.1, "push": 0.2}, n),
            "preferred_language": self.tables["customers"]["preferred_language"].to_numpy(),
            "interests": [[str(category_names[p])] for p in c.preferred.to_numpy()],
            "updated_at": _to_datetime(self.base, np.where(withdrew, withdraw_at, signup)), "version": 1,
        })
        # A handful of data-subject requests, most completed within the 30-day deadline.
        k = max(1, n // 400)
        who = rng.choice(n, size=k, replace=False)
        received = signup[who] + rng.random(k) * (self.span - signup[who])
        done = received + rng.uniform(2, 25, k) * DAY < self.span
        self.tables["customer_data_subject_requests"] = pd.DataFrame({
            "id": np.arange(1, k + 1), "customer_id": who + 1,
            "request_type": _choice(rng, {"access": 0.6, "rectification": 0.2, "portability": 0.15, "objection": 0.05}, k),
            "status": np.where(done, "completed", "in_progress"),
            "received_at": _to_datetime(self.base, received), "due_at": _to_datetime(self.base, received + 30 * DAY),
            "completed_at": _to_datetime(self.base, received + 10 * DAY).where(done),
        })

    def _addresses_and_payments(self) -> None:
        rng, c = self.rng, self.cust
        n = self.n
        customers = self.tables["customers"]
        streets = self._pool(self.faker.street_name, 400)
        billing_too = rng.random(n) < 0.3
        cust = np.concatenate([np.arange(n), np.flatnonzero(billing_too)])
        k = len(cust)
        kind = np.array(["shipping"] * n + ["billing"] * int(billing_too.sum()), dtype=object)
        self.tables["customer_addresses"] = pd.DataFrame({
            "id": np.arange(1, k + 1), "customer_id": cust + 1, "kind": kind,
            "line1": pd.Series(rng.integers(1, 250, k).astype(str)).to_numpy() + " " + streets[rng.integers(len(streets), size=k)],
            "city": customers["city"].to_numpy()[cust],
            "postal_code": pd.Series(rng.integers(10000, 99999, k).astype(str)).to_numpy(),
            "country_code": customers["country_code"].to_numpy()[cust],
            "is_default": True,
            "validation_status": _choice(rng, {"valid": 0.85, "unverified": 0.1, "corrected": 0.03, "invalid": 0.02}, k),
            "latitude": np.round(c.lat.to_numpy()[cust] + rng.normal(0, 0.05, k), 5),
            "longitude": np.round(c.lon.to_numpy()[cust] + rng.normal(0, 0.05, k), 5),
            "created_at": customers["signed_up_at"].to_numpy()[cust],
        })
        buyers = self.buyers
        second = buyers[rng.random(len(buyers)) < 0.2]
        cust = np.concatenate([buyers, second])
        k = len(cust)
        brand = _choice(rng, {"visa": 0.45, "mastercard": 0.35, "amex": 0.08, "paypal": 0.1, "discover": 0.02}, k)
        exp_year = self.end.year + rng.integers(-1, 5, k)
        exp_month = rng.integers(1, 13, k)
        expired = (exp_year < self.end.year) | ((exp_year == self.end.year) & (exp_month < self.end.month))
        token_ids = np.arange(1, k + 1)
        self.tables["customer_payment_methods"] = pd.DataFrame({
            "id": token_ids, "customer_id": cust + 1, "processor": "stripe",
            "processor_token": [f"pm_{self.seed:x}{i:09x}{r:08x}" for i, r in zip(token_ids, rng.integers(0, 2**32, k), strict=True)],
            "brand": brand, "last4": pd.Series(rng.integers(0, 10000, k)).map(lambda v: f"{v:04d}").to_numpy(),
            "exp_month": exp_month, "exp_year": exp_year,
            "fingerprint": [f"fp{r:016x}" for r in rng.integers(0, 2**62, k)],
            "is_default": np.arange(k) < len(buyers), "status": np.where(expired, "expired", "active"),
            "created_at": customers["signed_up_at"].to_numpy()[cust],
        })

    def _social(self) -> None:
        rng, c = self.rng, self.cust
        customers = self.tables["customers"]
        who = np.flatnonzero(rng.random(self.n) < 0.08)
        k = len(who)
        platform = _choice(rng, {"instagram": 0.35, "twitter": 0.25, "facebook": 0.25, "tiktok": 0.1, "linkedin": 0.05}, k)
        handle = (customers["first_name"].to_numpy()[who] + customers["last_name"].to_numpy()[who]).astype(str)
        handle = pd.Series(handle).str.lower().str.replace(r"[^a-z]", "", regex=True).to_numpy() + pd.Series((who + 1).astype(str)).to_numpy()
        self.tables["customer_social_media_integrations"] = pd.DataFrame({
            "id": np.arange(1, k + 1), "customer_id": who + 1, "platform": platform, "handle": handle,
            "profile_url": "https://" + platform + ".example/" + handle,
            "followers": rng.lognormal(5, 1.5, k).astype(int), "is_verified": rng.random(k) < 0.02,
            "connected_at": _to_datetime(self.base, c.signup.to_numpy()[who] + rng.random(k) * (self.span - c.signup.to_numpy()[who])),
        })
        mentions_per = rng.poisson(0.8, k)
        acc = np.repeat(np.arange(k), mentions_per)
        m = len(acc)
        sat = c.satisfaction.to_numpy()[who][acc]
        score = np.clip(np.round((sat - 0.55) * 2.2 + rng.normal(0, 0.25, m), 3), -1, 1)
        label = np.select([score > 0.05, score < -0.05], ["positive", "negative"], "neutral")
        signup = c.signup.to_numpy()[who][acc]
        self.tables["customer_social_media_mentions"] = pd.DataFrame({
            "id": np.arange(1, m + 1), "social_account_id": acc + 1, "customer_id": who[acc] + 1,
            "platform": platform[acc], "posted_at": _to_datetime(self.base, signup + rng.random(m) * (self.span - signup)),
            "text": self._mention_texts(label), "reach": rng.lognormal(4, 1.2, m).astype(int),
            "sentiment_score": score, "sentiment_label": label, "author": handle[acc],
            "external_id": [f"sim:{i}" for i in range(1, m + 1)], "sentiment_model": "simulated",
        })

    def _mention_texts(self, labels: np.ndarray) -> np.ndarray:
        """A post per mention that fits its sentiment and names a category or a service topic, so the
        Social page has topics to count. Its own random stream keeps every other table as it was."""
        rng = np.random.default_rng([self.seed, 17])
        categories = np.array(list(CATEGORIES), dtype=object)
        templates = {
            "positive": ("Love my new {c} order from the shop, arrived quickly!", "Great quality {c}, really happy.",
                         "Fast delivery and friendly customer service. Thank you!", "Best price for {c} I found."),
            "neutral": ("Ordered {c} from the shop again this week.", "Anyone tried their {c} range?",
                        "Parcel tracking says Thursday.", "Looking at {c} in the sale."),
            "negative": ("Still waiting for my parcel, really disappointed with the shop.",
                         "The {c} I ordered arrived broken. Asking for a refund.",
                         "Terrible customer service, nobody answers.", "Overpriced {c} and poor quality."),
        }
        texts = np.empty(len(labels), dtype=object)
        picks = rng.integers(0, 4, len(labels))
        named = categories[rng.integers(0, len(categories), len(labels))]
        for i, (label, pick, category) in enumerate(zip(labels, picks, named, strict=True)):
            texts[i] = templates[str(label)][pick].format(c=category)
        return texts

    def _referrals(self) -> None:
        rng = self.rng
        customers = self.tables["customers"]
        referred = np.flatnonzero(customers["acquisition_channel"].to_numpy() == "referral")
        referred = referred[referred > 0]
        k = len(referred)
        referrer = (rng.random(k) * referred).astype(int)  # always someone who signed up earlier
        bought = np.isin(referred, self.buyers)
        signup = self.cust.signup.to_numpy()
        self.tables["customer_referral_program"] = pd.DataFrame({
            "id": np.arange(1, k + 1), "referrer_id": referrer + 1, "referred_id": referred + 1,
            "referral_code": pd.Series(referred + 1).map(lambda i: f"REF{i:08d}").to_numpy(),
            "referred_email": customers["email"].to_numpy()[referred],
            "status": np.where(bought, "rewarded", "signed_up"), "reward_points": np.where(bought, 500, 0),
            "created_at": _to_datetime(self.base, np.maximum(signup[referred] - rng.uniform(1, 20, k) * DAY, signup[referrer])),
            "converted_at": _to_datetime(self.base, signup[referred] + 6 * DAY).where(bought),
        })

    def _risk(self) -> None:
        rng, c = self.rng, self.cust
        who = np.flatnonzero(rng.random(self.n) < 0.015)
        k = len(who)
        score = np.round(rng.uniform(20, 99, k), 1)
        level = np.select([score >= 85, score >= 65, score >= 40], ["critical", "high", "medium"], "low")
        signup = c.signup.to_numpy()[who]
        self.tables["customer_risk_assessments"] = pd.DataFrame({
            "id": np.arange(1, k + 1), "customer_id": who + 1,
            "risk_type": _choice(rng, {"fraud": 0.4, "chargeback": 0.3, "abuse": 0.2, "credit": 0.1}, k),
            "score": score, "level": level,
            "factors": [["address mismatch", "multiple cards"] if s >= 65 else ["new device"] for s in score],
            "status": _choice(rng, {"open": 0.4, "reviewed": 0.2, "cleared": 0.3, "confirmed": 0.1}, k),
            "assessed_at": _to_datetime(self.base, signup + rng.random(k) * (self.span - signup)),
        })


LOAD_ORDER = (
    "users", "customer_service_level_agreements", "products", "customers", "customer_addresses",
    "customer_payment_methods", "customer_preference_centers", "customer_gdpr_compliance",
    "customer_data_subject_requests", "orders", "order_items", "web_sessions",
    "customer_communication_history", "customer_support_tickets", "customer_support_ticket_responses",
    "customer_complaint_management", "customer_survey_responses", "customer_loyalty_programs",
    "customer_loyalty_transactions", "customer_loyalty_tier_changes",
    "customer_social_media_integrations", "customer_social_media_mentions",
    "customer_referral_program", "customer_risk_assessments",
)


def _simulated_in_background(simulator: Simulator) -> Iterator[tuple[str, pd.DataFrame]]:
    handoff: queue.Queue = queue.Queue(maxsize=2)
    finished = object()

    def produce() -> None:
        try:
            for item in simulator.iter_tables():
                handoff.put(item)
            handoff.put(finished)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the loading thread
            handoff.put(exc)

    threading.Thread(target=produce, name="simulator", daemon=True).start()
    while (item := handoff.get()) is not finished:
        if isinstance(item, BaseException):
            raise item
        yield item


def database_is_empty(engine: Engine) -> bool:
    with engine.connect() as connection:
        return not connection.scalar(select(func.count()).select_from(Customer))


def seed_database(
    engine: Engine,
    n_customers: int,
    seed: int = 7,
    end: dt.datetime | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> SeedResult:
    """Simulate and bulk-load the demo business into an empty, migrated database.

    Secondary indexes are dropped for the load and rebuilt afterwards (one sorted build is much
    faster than millions of random inserts); all of it is one transaction, so a failure leaves the
    database as it was.
    """
    if not database_is_empty(engine):
        raise ValueError("The database already has customers; seed only an empty database.")
    started = time.perf_counter()
    result = SeedResult()
    indexes = [index for name in LOAD_ORDER for index in Base.metadata.tables[name].indexes]
    with engine.begin() as connection:
        postgres = connection.dialect.name == "postgresql"
        # PostgreSQL checks foreign keys row by row with triggers and maintains unique indexes
        # row by row; dropping those constraints and adding them back validates each in one pass.
        # SQLite cannot drop constraints; tables arrive parents first, so its checks pass as they go.
        constraints = [
            constraint
            for name in LOAD_ORDER
            for constraint in Base.metadata.tables[name].constraints
            if isinstance(constraint, ForeignKeyConstraint | UniqueConstraint)
        ] if postgres else []
        # Foreign keys are dropped before, and re-added after, the unique constraints they may rely on.
        constraints.sort(key=lambda c: isinstance(c, UniqueConstraint))
        if postgres:
            connection.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
        else:
            connection.exec_driver_sql("PRAGMA cache_size=-262144")
        for constraint in constraints:
            connection.execute(DropConstraint(constraint))
        for index in indexes:
            index.drop(connection)
        # Simulation runs in a thread, one table ahead of the loader: numpy and the database
        # drivers release the GIL for much of their work, so the two overlap on two cores.
        # The simulator yields parent tables before their children.
        for name, frame in _simulated_in_background(Simulator(n_customers, seed, end)):
            table = Base.metadata.tables[name]
            result.counts[name] = bulk.load(connection, table, frame)
            bulk.reset_sequence(connection, table)
            if progress:
                progress(name, result.counts[name])
        for index in indexes:
            index.create(connection)
        for constraint in reversed(constraints):
            connection.execute(AddConstraint(constraint))
        if progress:
            progress("indexes and constraints", len(indexes) + len(constraints))
    with engine.begin() as connection:
        # Sampled statistics are enough for the planner and take a fraction of a full ANALYZE.
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA analysis_limit=1000")
        else:
            connection.exec_driver_sql("SET LOCAL default_statistics_target = 20")
        connection.execute(text("ANALYZE"))
    if progress:
        progress("analyzed", 0)
    result.seconds = time.perf_counter() - started
    return result
