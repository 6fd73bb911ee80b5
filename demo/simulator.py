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
import re
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

from crm_core import campaigns, loyalty, platform, referrals, service
from db import bulk
from db.models import AppSetting, Base, Customer

HISTORY_YEARS = 3
FIRST_ROLES = ("admin", "analyst", "success_manager", "support_agent", "executive")
DAY = 86_400
REFERRAL_ALLOWANCE_CUSTOMERS = 100_000  # the shop size the default monthly referral allowance suits

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
    "executive": "exec", "risk_analyst": "risk",
}
# Share of customers the simulator makes risky, each scenario apart (issue 16): fraud rings sharing a
# device, an address and a card; stolen accounts taken over recently; customers who do not pay.
PLANTED_SHARES = {"fraud_ring": 0.006, "account_takeover": 0.004, "bad_credit": 0.005}
SIGN_IN_DAYS = 180  # sign-ins are simulated for the orders of the last half year
# Duplicate customers: about 1% of the records are a second record of an earlier customer (a guest
# checkout next to an account, a work e-mail next to a private one), none in a shop under 50.
DUPLICATE_SHARE = 0.01
DUPLICATE_MIN_SHOP = 50
DUPLICATE_MIN_DAYS = 7      # the second record signs up at least a week after the first
DUPLICATE_MOVED = 0.2       # share of second records with another street and postal code (same city)
NICKNAMES = {
    "Alexander": "Alex", "Alexandra": "Alex", "Andrew": "Andy", "Anthony": "Tony", "Benjamin": "Ben",
    "Catherine": "Cathy", "Charles": "Charlie", "Christian": "Chris", "Christina": "Tina",
    "Christine": "Chris", "Christopher": "Chris", "Daniel": "Dan", "David": "Dave", "Deborah": "Debbie",
    "Edward": "Ed", "Elizabeth": "Liz", "Franziska": "Franzi", "Frederick": "Fred", "Friedrich": "Fritz",
    "Gregory": "Greg", "Jacqueline": "Jackie", "James": "Jim", "Jennifer": "Jenny", "Jessica": "Jess",
    "Johannes": "Hannes", "John": "Jack", "Jonathan": "Jon", "Joseph": "Joe", "Joshua": "Josh",
    "Katharina": "Kathi", "Katherine": "Kate", "Kathryn": "Kate", "Kenneth": "Ken", "Margaret": "Maggie",
    "Matthew": "Matt", "Maximilian": "Max", "Michael": "Mike", "Nicholas": "Nick", "Patricia": "Pat",
    "Patrick": "Pat", "Rebecca": "Becky", "Richard": "Rick", "Robert": "Bob", "Ronald": "Ron",
    "Samantha": "Sam", "Samuel": "Sam", "Stefanie": "Steffi", "Stephanie": "Steph", "Stephen": "Steve",
    "Steven": "Steve", "Susan": "Sue", "Thomas": "Tom", "Timothy": "Tim", "Victoria": "Vicky",
    "William": "Bill", "Wolfgang": "Wolf",
}


def demo_password(username: str) -> str:
    """Demo staff passwords, listed in the README: the username with a dash before its number,
    then '-demo-passphrase' (admin1 -> admin-1-demo-passphrase). They meet the password rules."""
    stem = username.rstrip("0123456789")
    return f"{stem}-{username[len(stem):]}-demo-passphrase"


# The password hash of simulated staff when no demo users are asked for: no password matches it.
UNUSABLE_PASSWORD_HASH = "!simulated staff: no sign-in"


@dataclass
class SeedResult:
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    # The simulated truth of each past win-back campaign (Simulator.campaign_truth).
    campaign_truth: dict[str, dict[str, float]] = field(default_factory=dict)


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


# Letters that Unicode does not decompose into a base letter and an accent, spelled as people do in an address.
_SPELLED_OUT = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th",
                              "ı": "i"})


def _mailbox_text(names: pd.Series) -> pd.Series:
    """Names as a mailbox spells them: lower case, accents dropped but not their letters ('Édith' ->
    'edith', 'Françoise' -> 'francoise', 'Groß' -> 'gross')."""
    text = names.str.lower().str.translate(_SPELLED_OUT).str.normalize("NFKD")
    return text.str.encode("ascii", "ignore").str.decode("ascii")


def _copy_rows(frame: pd.DataFrame, columns: list[str], target: np.ndarray, source: np.ndarray) -> None:
    """frame.loc[target, columns] = frame.loc[source, columns] by position, a column at a time."""
    for column in columns:
        values = frame[column].to_numpy().copy()
        values[target] = values[source]
        frame[column] = values


class Simulator:
    """Builds the demo tables as DataFrames for `n_customers`, ending at `end`."""

    def __init__(self, n_customers: int, seed: int = 7, end: dt.datetime | None = None, demo_users: bool = False):
        if n_customers < 1:
            raise ValueError("n_customers must be at least 1")
        self.n = n_customers
        self.demo_users = demo_users
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        end = end or dt.datetime.now().replace(microsecond=0)
        self.end = end
        self.start = end - dt.timedelta(days=round(365.25 * HISTORY_YEARS))
        self.base = np.datetime64(self.start, "s")
        self.span = (self.end - self.start).total_seconds()
        self.faker = Faker(["en_US", "de_DE", "fr_FR", "en_GB"])
        self.faker.seed_instance(seed)
        self._late_faker = Faker("en_GB")
        self._late_faker.seed_instance(seed + 16)
        # Risk planting draws from its own stream, so every table built before it stays the same.
        self.risk_rng = np.random.default_rng([seed, 16])
        # So do the duplicate customers: only the second records' own fields differ from a shop without them.
        self.duplicate_rng = np.random.default_rng([seed, 23])
        self.duplicates = np.empty((0, 2), dtype=np.int64)  # (original, second record) positions
        self.duplicate_moved = np.empty(0, dtype=bool)
        self._planted: dict[str, np.ndarray] | None = None
        self._ring_groups: list[np.ndarray] | None = None
        self.tables: dict[str, pd.DataFrame] = {}
        # Rows a later step adds to a table already yielded (win-back orders, messages), in load order.
        self.appended: list[tuple[str, pd.DataFrame]] = []
        self.campaign_truth: dict[str, dict[str, float]] = {}

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
            self._addresses_and_payments, self._social, self._referrals, self._risk, self._risk_events,
            self._winback_campaigns, self._carts,
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
                    while self.appended:
                        yield self.appended.pop(0)

    def _users(self) -> None:
        """The shop's staff (tickets and accounts need owners). They can sign in only as demo users
        (the embedded demo database, or `crm seed --demo-users`), with passwords the README lists and
        hashed like every password; otherwise they are deactivated and no password matches them."""
        rows = []
        for role, stem in ROLE_USERNAMES.items():
            for k in range(1, 4):
                username = f"{stem}{k}"
                rows.append({
                    "username": username,
                    # Roles added later take names from their own generator, so the names (and
                    # everything drawn after them) of the first roles stay as they were.
                    "full_name": self.faker.name() if role in FIRST_ROLES else self._late_faker.name(),
                    "email": f"{username}@shop.example",
                    "role": role,
                    "password_hash": (platform.hash_password(demo_password(username)) if self.demo_users
                                      else UNUSABLE_PASSWORD_HASH),
                    "is_active": self.demo_users,
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
        local = _mailbox_text(pd.Series(first + "." + last)).str.replace(r"[^a-z.]", "", regex=True)
        email = np.array(local + pd.Series(ids.astype(str)) + "@" + pd.Series(domains[ids % len(domains)]), dtype=object)
        number = np.array(rng.integers(100_000_000, 999_999_999, n).astype(str), dtype=object)
        phone = phone_prefix + " " + number
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

        self.duplicates = self._duplicate_pairs(signup_day)
        if len(self.duplicates):
            original, second = self.duplicates.T
            # The same person: same country, city, gender and birthday; a name, e-mail and phone
            # as people type them again. Both records are active (the scan skips closed ones).
            for values in (country, city, lat, lon, lang, phone_prefix, gender, dob):
                values[second] = values[original]
            first[second], last[second], email[second], phone[second] = self._duplicate_identity(
                original, first, last, email, phone_prefix, number)
            status[original] = status[second] = "active"

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

    # ------------------------------------------------------------------ duplicate customers
    def _duplicate_pairs(self, signup_day: np.ndarray) -> np.ndarray:
        """(original, second record) positions: about DUPLICATE_SHARE of the customers are a second
        record of someone who signed up at least DUPLICATE_MIN_DAYS earlier; one second record per
        original, and no second record is itself copied."""
        n, rng = self.n, self.duplicate_rng
        wanted = 0 if n < DUPLICATE_MIN_SHOP else max(3, round(DUPLICATE_SHARE * n))
        if not wanted:
            return np.empty((0, 2), dtype=np.int64)
        # Twice as many candidates as wanted, in random order; the first valid ones are kept.
        second = rng.choice(np.arange(n // 5, n), size=min(2 * wanted, n - n // 5), replace=False)
        # Positions are in signup order: everyone before `before` signed up a week or more earlier.
        before = np.searchsorted(signup_day, signup_day[second] - DUPLICATE_MIN_DAYS, side="left")
        original = (rng.random(len(second)) * before).astype(np.int64)
        keep = before > 0
        keep[np.setdiff1d(np.arange(len(original)), np.unique(original, return_index=True)[1])] = False
        keep &= ~np.isin(original, second)
        chosen = np.flatnonzero(keep)[:wanted]
        chosen = chosen[np.argsort(second[chosen])]
        original, second = original[chosen], second[chosen]
        self.duplicate_moved = rng.random(len(second)) < DUPLICATE_MOVED
        return np.stack([original, second], axis=1).astype(np.int64)

    def _duplicate_identity(self, original: np.ndarray, first: np.ndarray, last: np.ndarray, email: np.ndarray,
                            prefix: np.ndarray, number: np.ndarray) -> tuple[np.ndarray, ...]:
        """The second records' first and last names, e-mails and phones, varied from the originals'.

        Names: a typo, a nickname, another case or stray spaces (or unchanged). E-mails: the same
        mailbox written with dots removed, a +tag or capitals, or another address altogether (work
        and private). Phones: the same number written another way; a fifth of those who kept their
        mailbox give a new number. Only the second records' rows are touched (a few thousand at
        1,000,000 customers), so a loop over them costs little."""
        rng, k = self.duplicate_rng, len(original)
        name_kind = _choice(rng, {"typo": 0.35, "nickname": 0.2, "case": 0.2, "spaces": 0.15, "same": 0.1}, k)
        email_kind = _choice(rng, {"dots": 0.2, "plus": 0.15, "case": 0.1, "other": 0.55}, k)
        new_phone = (email_kind != "other") & (rng.random(k) < 0.2)
        phone_style = rng.integers(0, 5, k)
        typo_op, typo_at, in_last = rng.integers(0, 4, k), rng.random(k), rng.random(k) < 0.5
        letters = np.array(list("aeinorstlu"))[rng.integers(0, 10, k)]
        fresh = rng.integers(100_000_000, 999_999_999, k)
        tags = np.array(["shop", "orders", "news", "promo"])[rng.integers(0, 4, k)]
        hosts = np.array(["work.example", "company.example", "office.example", "freemail.example"])[rng.integers(0, 4, k)]
        years = rng.integers(60, 100, k)

        def typo(word: str, op: int, at: float, letter: str) -> str:
            if len(word) < 3:
                return word + letter
            i = 1 + int(at * (len(word) - 2))  # never the first letter
            if op == 0:  # two letters swapped
                return word[:i] + word[i + 1] + word[i] + word[i + 2:]
            if op == 1:  # one left out
                return word[:i] + word[i + 1:]
            if op == 2:  # one doubled
                return word[:i] + word[i] + word[i:]
            return word[:i] + letter + word[i + 1:]  # one mistyped

        firsts, lasts, emails, phones = [], [], [], []
        for j, o in enumerate(original):
            given, surname, mail, p, d = str(first[o]), str(last[o]), str(email[o]), str(prefix[o]), str(number[o])
            kind = name_kind[j]
            if kind == "nickname" and given not in NICKNAMES:
                kind = "typo"
            if kind == "typo":
                if in_last[j]:
                    surname = typo(surname, typo_op[j], typo_at[j], letters[j])
                else:
                    given = typo(given, typo_op[j], typo_at[j], letters[j])
            elif kind == "nickname":
                given = NICKNAMES[given]
            elif kind == "case":
                given, surname = (given.lower(), surname.lower()) if typo_at[j] < 0.5 else (given, surname.upper())
            elif kind == "spaces":
                given, surname = (given + " ", surname) if typo_at[j] < 0.5 else (given, " " + surname + " ")
            local, domain = mail.split("@")
            if email_kind[j] == "dots":
                mail = f"{local.replace('.', '')}@{domain}"
            elif email_kind[j] == "plus":
                mail = f"{local}+{tags[j]}@{domain}"
            elif email_kind[j] == "case":
                mail = f"{local.title()}@{domain.capitalize()}"
            else:
                plain = tuple(re.sub(r"[^a-z]", "", _mailbox_text(pd.Series([part]))[0]) for part in (given, surname))
                mail = (f"{plain[0]}.{plain[1]}@{hosts[j]}" if hosts[j] != "freemail.example"
                        else f"{plain[0][:1]}{plain[1]}{years[j]}@{hosts[j]}")
            if new_phone[j]:
                d = str(fresh[j])
            style = phone_style[j]
            phones.append(f"{p}{d}" if style == 0 else f"00{p[1:]} {d[:3]} {d[3:6]} {d[6:]}" if style == 1
                          else f"({p}) {d[:3]}-{d[3:6]}-{d[6:]}" if style == 2 else f"0{d[:3]} {d[3:]}" if style == 3
                          else f"{p} {d[:3]} {d[3:6]} {d[6:]}")
            firsts.append(given)
            lasts.append(surname)
            emails.append(mail)
        return tuple(np.array(values, dtype=object) for values in (firsts, lasts, emails, phones))

    def duplicate_customer_ids(self) -> np.ndarray:
        """The planted duplicates as (original id, second record id) rows, after `build`."""
        return self.duplicates + 1

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
        ledger = pd.concat([earn.drop(columns="cum"), redeem], ignore_index=True)
        ledger["idempotency_key"] = ledger["kind"] + ":" + ledger["source_type"] + ":" + ledger["source_id"]
        # The tables are written by the referral step, which adds the referral rewards it pays.
        self._loyalty_plan = {"members": members, "enrolled": enrolled, "ledger": ledger}

    def _loyalty_tables(self, rewards: pd.DataFrame) -> None:
        """The loyalty tables: the members' orders and redemptions plus the referral rewards paid
        (`rewards`: customer index, when, points, source_id, idempotency_key, reason). As
        `credit_reward` does, a rewarded customer who is not a member is enrolled by the reward."""
        plan = self._loyalty_plan
        members, enrolled = plan["members"], plan["enrolled"]
        first_reward = rewards.groupby("customer")["when"].min()
        joining = first_reward[~first_reward.index.isin(members)]
        members = np.concatenate([members, joining.index.to_numpy(dtype=int)])
        enrolled = np.concatenate([enrolled, joining.to_numpy(dtype=float)])
        # a member rewarded before the simulated enrolment was enrolled by that reward
        enrolled = np.minimum(enrolled, first_reward.reindex(members, fill_value=np.inf).to_numpy())
        a = len(members)
        account_of = np.full(self.n, -1)
        account_of[members] = np.arange(a)
        paid = pd.DataFrame({
            "acc": account_of[rewards["customer"].to_numpy(dtype=int)], "when": rewards["when"].to_numpy(dtype=float),
            "points": rewards["points"].to_numpy(dtype=np.int64), "kind": "earn", "source_type": "referral",
            "source_id": rewards["source_id"].to_numpy(), "reason": rewards["reason"].to_numpy(),
            "idempotency_key": rewards["idempotency_key"].to_numpy(),
        })
        ledger = pd.concat([plan["ledger"], paid], ignore_index=True).sort_values(["acc", "when"], kind="stable")
        ledger["balance_after"] = ledger.groupby("acc")["points"].cumsum()
        ledger = ledger.sort_values("when", kind="stable").reset_index(drop=True)
        ledger["id"] = np.arange(1, len(ledger) + 1)
        earn = ledger[ledger.kind == "earn"].sort_values(["acc", "when"], kind="stable")
        earn = earn.assign(cum=earn.groupby("acc")["points"].cumsum())
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
        self._duplicate_addresses(billing_too)
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
        self._plant_shared_identities()

    def _duplicate_addresses(self, billing_too: np.ndarray) -> None:
        """Second records ship to the original's address (the street sometimes typed in lower case);
        the DUPLICATE_MOVED share keep their own street and postal code in the same city. A second
        record's billing address, if any, is the original's (its shipping one if it has none)."""
        if not len(self.duplicates):
            return
        addresses, n = self.tables["customer_addresses"], self.n
        billing_row = np.full(n, -1)
        billing_row[np.flatnonzero(billing_too)] = n + np.arange(int(billing_too.sum()))
        original, second = self.duplicates[~self.duplicate_moved].T
        columns = ["line1", "postal_code", "city", "country_code", "latitude", "longitude"]
        _copy_rows(addresses, columns, second, original)
        lower = self.duplicate_rng.random(len(second)) < 0.3
        addresses.loc[second[lower], "line1"] = addresses.loc[second[lower], "line1"].str.lower()
        billed = billing_row[second] >= 0
        source = np.where(billing_row[original] >= 0, billing_row[original], original)[billed]
        _copy_rows(addresses, columns, billing_row[second][billed], source)

    # ------------------------------------------------------------------ planted risk (issue 16)
    def planted(self) -> dict[str, np.ndarray]:
        """Customer positions per planted scenario, drawn once among buyers from the risk stream."""
        if self._planted is None:
            rng, buyers = self.risk_rng, self.buyers
            pool = rng.permutation(buyers)
            sizes = [int(round(share * self.n)) for share in PLANTED_SHARES.values()]
            if len(pool) < sum(sizes) + 12:
                sizes = [0, 0, 0]
            ends = np.cumsum(sizes)
            self._planted = {name: np.sort(pool[end - size:end])
                             for name, size, end in zip(PLANTED_SHARES, sizes, ends, strict=True)}
            # Households: a few ordinary customers share a shipping address with another (not fraud).
            rest = pool[ends[-1]:]
            pairs = rest[: 2 * (len(rest) // 200)]
            self._planted["household"] = pairs
        return self._planted

    def _rings(self) -> list[np.ndarray]:
        """The fraud rings: groups of 3-6 planted members (a last group of one joins none)."""
        if self._ring_groups is None:
            members = self.planted()["fraud_ring"]
            bounds = np.cumsum(self.risk_rng.integers(3, 7, len(members)))
            groups = np.split(members, bounds[bounds < len(members)])
            self._ring_groups = [g for g in groups if len(g) >= 2]
        return self._ring_groups

    def _plant_shared_identities(self) -> None:
        """Fraud rings share a shipping address and a card; bad payers add cards in a rush."""
        rng, planted = self.risk_rng, self.planted()
        addresses, cards = self.tables["customer_addresses"], self.tables["customer_payment_methods"]
        self.ring_of = np.full(self.n, -1)
        shipping = addresses.index[addresses["kind"] == "shipping"].to_numpy()  # row i is customer i
        for number, ring in enumerate(self._rings()):
            self.ring_of[ring] = number
            lead = shipping[ring[0]]
            for column in ("line1", "postal_code", "city", "country_code", "latitude", "longitude"):
                addresses.loc[shipping[ring], column] = addresses.at[lead, column]
            default_card = cards.index[cards["customer_id"].isin(ring + 1) & cards["is_default"]]
            cards.loc[default_card, "fingerprint"] = f"fpring{self.seed:x}{number:08x}"
        household = planted["household"].reshape(-1, 2) if len(planted["household"]) else np.empty((0, 2), int)
        for a, b in household:
            for column in ("line1", "postal_code", "city", "country_code", "latitude", "longitude"):
                addresses.at[shipping[b], column] = addresses.at[shipping[a], column]
        bad = planted["bad_credit"]
        extra = np.repeat(bad, 3)
        k = len(extra)
        if k:
            start = int(cards["id"].max()) + 1
            rushed = self.span - rng.uniform(2, 40, len(bad)) * DAY
            created = np.repeat(rushed, 3) + rng.uniform(0, 3, k) * DAY
            new = pd.DataFrame({
                "id": np.arange(start, start + k), "customer_id": extra + 1, "processor": "stripe",
                "processor_token": [f"pm_{self.seed:x}r{i:09x}" for i in range(k)],
                "brand": _choice(rng, {"visa": 0.5, "mastercard": 0.5}, k),
                "last4": [f"{v:04d}" for v in rng.integers(0, 10000, k)],
                "exp_month": rng.integers(1, 13, k), "exp_year": self.end.year + rng.integers(1, 4, k),
                "fingerprint": [f"fpr{r:016x}" for r in rng.integers(0, 2**62, k)],
                "is_default": False, "status": "active", "created_at": _to_datetime(self.base, created),
            })
            self.tables["customer_payment_methods"] = pd.concat([cards, new], ignore_index=True)

    def _risk_events(self) -> None:
        """Sign-ins with device and place, credential and address changes, chargebacks, identity
        checks, and the planted truth the risk scores are measured against."""
        rng, planted, c = self.risk_rng, self.planted(), self.cust
        customers = self.tables["customers"]
        lat, lon = c.lat.to_numpy(), c.lon.to_numpy()
        country = customers["country_code"].to_numpy()
        city = customers["city"].to_numpy()
        recent = self.order_time >= self.span - SIGN_IN_DAYS * DAY
        who = self.order_cust[recent]
        when = self.order_time[recent] - rng.uniform(60, 1800, len(who))
        second_device = rng.random(len(who)) < 0.1
        device = np.array([f"d{self.seed:x}-{i:07x}-{int(s)}" for i, s in zip(who, second_device, strict=True)], dtype=object)
        mobile_ip = rng.random(len(who)) < 0.2
        ip = np.array([f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}" for i in who], dtype=object)
        ip[mobile_ip] = [f"100.64.{a}.{b}" for a, b in rng.integers(0, 256, (int(mobile_ip.sum()), 2))]
        parts = [pd.DataFrame({"customer_id": who, "t": when, "device_id": device, "ip_address": ip,
                               "country_code": country[who], "city": city[who], "latitude": lat[who], "longitude": lon[who]})]
        # Fraud rings sign in from one shared device.
        for number, ring in enumerate(self._rings()):
            t = self.span - rng.uniform(1, 60, len(ring)) * DAY
            parts.append(pd.DataFrame({"customer_id": ring, "t": t, "device_id": f"ring{self.seed:x}-{number:05x}",
                                       "ip_address": f"185.220.{number % 256}.{(number // 256) % 256}",
                                       "country_code": country[ring], "city": city[ring],
                                       "latitude": lat[ring], "longitude": lon[ring]}))
        # Ordinary life: some customers travel (a new place days later) or get a new phone.
        travellers = rng.choice(self.buyers, max(1, len(self.buyers) // 100)) if len(self.buyers) else np.array([], int)
        t = self.span - rng.uniform(1, 25, len(travellers)) * DAY
        far = rng.integers(0, len(GEOGRAPHY), len(travellers))
        places = [GEOGRAPHY[code][1][0] for code in GEOGRAPHY]
        codes = list(GEOGRAPHY)
        parts.append(pd.DataFrame({"customer_id": travellers, "t": t,
                                   "device_id": [f"d{self.seed:x}-{i:07x}-0" for i in travellers],
                                   "ip_address": [f"203.0.113.{i % 256}" for i in travellers],
                                   "country_code": [codes[f] for f in far], "city": [places[f][0] for f in far],
                                   "latitude": [places[f][1] for f in far], "longitude": [places[f][2] for f in far]}))
        changes = []
        # Takeovers: a sign-in from a new device and a new IP, often far from a sign-in hours before,
        # then a password change and within days a new address or payout account.
        victims = planted["account_takeover"]
        t_take = self.span - rng.uniform(0.5, 12, len(victims)) * DAY
        far_place = rng.integers(0, len(GEOGRAPHY), len(victims))
        home_first = rng.random(len(victims)) < 0.7
        # The owner signed in before: minutes before (impossible travel) or days before.
        owner_gap = np.where(home_first, rng.uniform(5, 60, len(victims)) * 60, rng.uniform(2, 20, len(victims)) * DAY)
        parts.append(pd.DataFrame({"customer_id": victims, "t": t_take - owner_gap,
                                   "device_id": [f"d{self.seed:x}-{i:07x}-0" for i in victims],
                                   "ip_address": [f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}" for i in victims],
                                   "country_code": country[victims], "city": city[victims],
                                   "latitude": lat[victims], "longitude": lon[victims]}))
        attacker = pd.DataFrame({"customer_id": victims, "t": t_take,
                                 "device_id": [f"x{self.seed:x}-{r:012x}" for r in rng.integers(0, 2**46, len(victims))],
                                 "ip_address": [f"45.{a}.{b}.{d}" for a, b, d in rng.integers(0, 256, (len(victims), 3))],
                                 "country_code": [codes[f] for f in far_place], "city": [places[f][0] for f in far_place],
                                 "latitude": [places[f][1] for f in far_place], "longitude": [places[f][2] for f in far_place]})
        parts.append(attacker)
        changes.append(pd.DataFrame({"customer_id": victims, "kind": "password", "t": t_take + 600}))
        changes.append(pd.DataFrame({"customer_id": victims, "kind": np.where(rng.random(len(victims)) < 0.7, "address", "payout"),
                                     "t": t_take + rng.uniform(0.05, 2.5, len(victims)) * DAY}))
        # Ordinary changes: passwords forgotten, people moving (a few do both within days).
        for kind, share in (("password", 0.01), ("address", 0.01), ("email", 0.003)):
            movers = rng.choice(self.buyers, int(share * len(self.buyers))) if len(self.buyers) else np.array([], int)
            changes.append(pd.DataFrame({"customer_id": movers, "kind": kind,
                                         "t": self.span - rng.uniform(0, 365, len(movers)) * DAY}))
        sign_ins = pd.concat(parts, ignore_index=True)
        sign_ins = sign_ins[sign_ins["t"] < self.span].sort_values(["t", "customer_id"], kind="stable")
        self.tables["customer_sign_in_events"] = pd.DataFrame({
            "id": np.arange(1, len(sign_ins) + 1), "customer_id": sign_ins["customer_id"].to_numpy() + 1,
            "signed_in_at": _to_datetime(self.base, sign_ins["t"].to_numpy()),
            "device_id": sign_ins["device_id"].to_numpy(), "ip_address": sign_ins["ip_address"].to_numpy(),
            "country_code": sign_ins["country_code"].to_numpy(), "city": sign_ins["city"].to_numpy(),
            "latitude": sign_ins["latitude"].to_numpy(dtype=float), "longitude": sign_ins["longitude"].to_numpy(dtype=float),
            "succeeded": True,
        })
        change = pd.concat(changes, ignore_index=True)
        change = change[change["t"] < self.span].sort_values("t", kind="stable")
        self.tables["customer_account_changes"] = pd.DataFrame({
            "id": np.arange(1, len(change) + 1), "customer_id": change["customer_id"].to_numpy() + 1,
            "kind": change["kind"].to_numpy(), "changed_at": _to_datetime(self.base, change["t"].to_numpy()),
        })
        # Chargebacks: rings and bad payers dispute many orders; a few ordinary customers one.
        orders = self.tables["orders"]
        order_cust = self.order_cust
        ring_member = np.isin(order_cust, planted["fraud_ring"])
        bad_payer = np.isin(order_cust, planted["bad_credit"])
        last_year = self.order_time >= self.span - 365 * DAY
        p = np.where(ring_member, 0.5, np.where(bad_payer, 0.45, 0.002))
        disputed = np.flatnonzero(last_year & (rng.random(len(order_cust)) < p))
        opened = self.order_time[disputed] + rng.uniform(5, 40, len(disputed)) * DAY
        keep = opened < self.span
        disputed, opened = disputed[keep], opened[keep]
        self.tables["customer_chargebacks"] = pd.DataFrame({
            "id": np.arange(1, len(disputed) + 1), "customer_id": order_cust[disputed] + 1,
            "order_id": orders["id"].to_numpy()[disputed], "amount": orders["total"].to_numpy()[disputed],
            "reason": np.where(bad_payer[disputed], "insufficient_funds", "fraudulent"),
            "status": _choice(rng, {"open": 0.3, "won": 0.2, "lost": 0.5}, len(disputed)),
            "opened_at": _to_datetime(self.base, opened),
        })
        # Identity checks: some customers verified on import; half the bad payers failed one.
        verified = rng.choice(self.n, self.n // 10, replace=False) if self.n >= 10 else np.array([], int)
        failed = planted["bad_credit"][rng.random(len(planted["bad_credit"])) < 0.5]
        verified = np.setdiff1d(verified, failed)
        checks = pd.concat([
            pd.DataFrame({"customer_id": verified, "status": "verified", "reason": None, "source": "import",
                          "t": c.signup.to_numpy()[verified] + DAY}),
            pd.DataFrame({"customer_id": failed, "status": "failed", "reason": "document does not match the name",
                          "source": "import", "t": self.span - rng.uniform(1, 60, len(failed)) * DAY}),
        ], ignore_index=True).sort_values("t", kind="stable")
        self.tables["customer_identity_checks"] = pd.DataFrame({
            "id": np.arange(1, len(checks) + 1), "customer_id": checks["customer_id"].to_numpy() + 1,
            "status": checks["status"].to_numpy(), "reason": checks["reason"].to_numpy(),
            "source": checks["source"].to_numpy(), "checked_at": _to_datetime(self.base, checks["t"].to_numpy(dtype=float)),
        })
        truth = [pd.DataFrame({"customer_id": planted["fraud_ring"], "scenario": "fraud_ring", "risk_type": "fraud",
                               "t": c.signup.to_numpy()[planted["fraud_ring"]]}),
                 pd.DataFrame({"customer_id": victims, "scenario": "account_takeover", "risk_type": "account_takeover",
                               "t": t_take}),
                 pd.DataFrame({"customer_id": planted["bad_credit"], "scenario": "bad_credit", "risk_type": "credit",
                               "t": c.signup.to_numpy()[planted["bad_credit"]]})]
        truth_frame = pd.concat(truth, ignore_index=True).sort_values("customer_id")
        self.tables["simulated_risk_truth"] = pd.DataFrame({
            "customer_id": truth_frame["customer_id"].to_numpy() + 1, "scenario": truth_frame["scenario"].to_numpy(),
            "risk_type": truth_frame["risk_type"].to_numpy(),
            "planted_at": _to_datetime(self.base, truth_frame["t"].to_numpy(dtype=float)),
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
        """Referrals as the referral step of the refresh would have left them at the end: a friend's
        first paid order converts the referral (an accepted check, both sides' rewards held for the
        return window), and the refresh after the window pays them (reward rows, loyalty ledger
        entries keyed as `_pay_due` keys them) within the allowances, unless that side's customer is
        closed. The default rewards (points) are simulated; vouchers and fraud checks are not."""
        rng = self.rng
        customers = self.tables["customers"]
        referred = np.flatnonzero(customers["acquisition_channel"].to_numpy() == "referral")
        referred = referred[referred > 0]
        k = len(referred)
        referrer = (rng.random(k) * referred).astype(int)  # always someone who signed up earlier
        signup = self.cust.signup.to_numpy()
        created = np.maximum(signup[referred] - rng.uniform(1, 20, k) * DAY, signup[referrer])

        # The friend's first paid order from a day before the referral on (as `_first_paid_order`).
        referral_of = np.full(self.n, -1)
        referral_of[referred] = np.arange(k)
        ref = referral_of[self.order_cust]
        paid = (ref >= 0) & np.isin(self.orders["status"].to_numpy(), referrals.PAID_FRIEND_STATUSES)
        if k:  # a small shop may have no referred customer at all
            paid &= self.order_time >= created[np.maximum(ref, 0)] - DAY
        paid_orders = np.flatnonzero(paid)  # orders are in time order, so the first per referral is the first paid
        converting, first = np.unique(ref[paid_orders], return_index=True)
        first_order = np.full(k, -1)
        first_order[converting] = paid_orders[first]
        converted = first_order >= 0
        converted_at = np.where(converted, self.order_time[np.maximum(first_order, 0)], np.nan)

        settings = self.referral_settings
        payable = converted_at + settings["return_window_days"] * DAY
        sides = [pd.DataFrame({"referral": np.flatnonzero(converted), "side": side, "customer": who[converted],
                               "points": settings[f"{side}_points"]})
                 for side, who in (("referrer", referrer), ("friend", referred))]
        rewards = pd.concat(sides, ignore_index=True).sort_values(["referral", "side"], ascending=[True, False],
                                                                    kind="stable").reset_index(drop=True)
        rewards = rewards[rewards.points > 0].reset_index(drop=True)
        rewards["id"] = np.arange(1, len(rewards) + 1)
        at = rewards["referral"].to_numpy()
        rewards["payable"] = payable[at]
        self._settle_rewards(rewards, customers["status"].to_numpy() == "closed", settings)
        rewarded = np.zeros(k, dtype=bool)
        rewarded[at[(rewards.side == "referrer").to_numpy() & (rewards.status == "paid").to_numpy()]] = True

        status = np.select([rewarded, converted], ["rewarded", "converted"], "signed_up")
        self.tables["customer_referral_program"] = pd.DataFrame({
            "id": np.arange(1, k + 1), "referrer_id": referrer + 1, "referred_id": referred + 1,
            "referral_code": pd.Series(referred + 1).map(lambda i: f"REF{i:08d}").to_numpy(),
            "referred_email": customers["email"].to_numpy()[referred],
            "status": status, "reward_points": np.where(rewarded, settings["referrer_points"], 0),
            "created_at": _to_datetime(self.base, created),
            "converted_at": _to_datetime(self.base, np.nan_to_num(converted_at)).where(converted),
        })
        self.tables["customer_referral_checks"] = pd.DataFrame({
            "referral_id": np.flatnonzero(converted) + 1, "verdict": "accepted",
            "reasons": [[] for _ in range(int(converted.sum()))],
            "first_order_id": first_order[converted] + 1,
            "checked_at": _to_datetime(self.base, converted_at[converted]),
        })
        settled = rewards.status.isin(["paid", "rejected"]).to_numpy()
        self.tables["customer_referral_rewards"] = pd.DataFrame({
            "id": rewards["id"], "referral_id": at + 1, "side": rewards["side"], "customer_id": rewards["customer"] + 1,
            "points": rewards["points"], "status": rewards["status"], "order_id": first_order[at] + 1,
            "payable_at": _to_datetime(self.base, rewards["payable"].to_numpy()),
            "settled_at": _to_datetime(self.base, np.nan_to_num(rewards["settled"].to_numpy())).where(settled),
            "reason": rewards["reason"], "kind": "points", "amount": None, "voucher_id": None,
        })
        paid_rewards = rewards[rewards.status == "paid"]
        self._loyalty_tables(pd.DataFrame({
            "customer": paid_rewards["customer"], "when": paid_rewards["settled"], "points": paid_rewards["points"],
            "source_id": (paid_rewards["referral"] + 1).astype(str),
            "idempotency_key": "referral:reward:" + paid_rewards["id"].astype(str),
            "reason": "Referral reward (" + paid_rewards["side"] + ") for referral "
                      + (paid_rewards["referral"] + 1).astype(str),
        }))

    @property
    def referral_settings(self) -> dict:
        """The programme's settings: the defaults, with the monthly allowance a shop of this size would
        set (the default suits about 100,000 customers; a larger demo shop scales it, and stores it)."""
        defaults = referrals.DEFAULT_REFERRAL_SETTINGS
        scale = -(-self.n // REFERRAL_ALLOWANCE_CUSTOMERS)
        return {**defaults, "global_monthly_points": defaults["global_monthly_points"] * max(scale, 1)}

    def _settle_rewards(self, rewards: pd.DataFrame, closed: np.ndarray, settings: dict) -> None:
        """Settle the rewards past their return window as the refresh's daily payouts (`_pay_due`) would
        have, in the order they became payable: a referrer's reward beyond the yearly allowance lapses,
        one beyond the programme's monthly allowance waits (held) and is paid at the start of a month
        with room, and one of a closed account lapses; the rest are paid. Adds the columns status,
        reason and settled (seconds; NaN while held) to `rewards`."""
        count = len(rewards)
        status, reason = np.full(count, "held", dtype=object), np.full(count, None, dtype=object)
        settled = np.full(count, np.nan)
        payable = rewards["payable"].to_numpy()
        due = np.flatnonzero(payable <= self.span)
        due = due[np.lexsort((rewards["id"].to_numpy()[due], payable[due]))]
        if len(due):
            months = (self.base + payable[due].astype("int64").astype("timedelta64[s]")).astype("datetime64[M]")
            last = (self.base + np.timedelta64(int(self.span), "s")).astype("datetime64[M]")
            side, customer = rewards["side"].to_numpy(), rewards["customer"].to_numpy()
            points = rewards["points"].to_numpy()
            yearly, monthly = settings["per_referrer_yearly_points"], settings["global_monthly_points"]
            referrer_paid: dict[int, list[tuple[float, int]]] = {}
            waiting: list[int] = []
            for month in np.arange(months[0], last + 1):
                start = max(float((month.astype("datetime64[s]") - self.base).astype("int64")), 0.0)
                budget, still = monthly, []
                for index in [*waiting, *due[months == month]]:
                    when = max(payable[index], start)  # a waiting reward is paid by the month's first refresh
                    if side[index] == "referrer":
                        paid_in_year = sum(p for t, p in referrer_paid.get(customer[index], ()) if t >= when - 365 * DAY)
                        if paid_in_year + points[index] > yearly:
                            status[index], settled[index] = "rejected", when
                            reason[index] = "the referrer's yearly reward allowance is spent"
                            continue
                    if points[index] > budget:
                        reason[index] = "waiting: the programme's monthly allowance is spent"
                        still.append(index)
                        continue
                    if closed[customer[index]]:
                        status[index], settled[index] = "rejected", when
                        reason[index] = f"the {side[index]}'s account is closed"
                        continue
                    status[index], settled[index], reason[index] = "paid", when, None
                    budget -= points[index]
                    if side[index] == "referrer":
                        referrer_paid.setdefault(customer[index], []).append((when, points[index]))
                waiting = still
        rewards["status"], rewards["reason"], rewards["settled"] = status, reason, settled

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


    # ------------------------------------------------------------------ win-back campaigns (issue 17)
    def _winback_campaigns(self) -> None:
        """Past win-back campaigns with a known truth, and one running now.

        Each targets the customers (with an e-mail opt-in) who had not ordered for 60 days, holds out
        30% at random (the product's own hashed assignment) and offers 15% off. Whether the offer
        brings a customer back depends on who they are: regular buyers lapsed for up to 240 days are
        persuadable (30% make an extra purchase in the window), customers gone for over a year never
        come back for it, and the rest only rarely (4%); many buy anyway, offer or not (their
        natural orders). The truth per campaign is the expected effect over its audience:
        conversion lift = mean of τ·(1 − natural conversion), revenue lift = mean of τ·(offer order total).
        Its own random stream keeps every other table as it was.
        """
        rng = np.random.default_rng([self.seed, 17])
        n = self.n
        orders = self.tables["orders"]
        time = self.order_time
        cust = self.order_cust
        revenue = np.isin(orders["status"].to_numpy(), ["placed", "paid", "shipped", "delivered"])
        totals = orders["total"].to_numpy()
        prefs = self.tables["customer_preference_centers"]
        reachable = prefs["email_opt_in"].to_numpy() & (prefs["contact_frequency"].to_numpy() != "never")
        reachable &= self.tables["customers"]["status"].to_numpy() == "active"
        products = self.tables["products"]
        prices = products["unit_price"].to_numpy()
        analyst = int(self.tables["users"].query("role == 'analyst'")["id"].iloc[0])
        plans = [(300, "completed"), (200, "completed"), (110, "completed"), (10, "running")]
        window, share, lapsed_days, percent = 30, 0.3, 60, 15
        rows, targets, messages, extra_orders, extra_items, issued = [], [], [], [], [], []
        codes = np.random.default_rng([self.seed, 21])  # voucher codes: a stream of their own
        next_order = len(orders) + 1
        next_item = len(self.tables["order_items"]) + 1
        next_message = len(self.tables["customer_communication_history"]) + 1
        next_target = 1
        for cid, (days_before, status) in enumerate(plans, 1):
            launch = self.span - days_before * DAY
            if launch <= 90 * DAY:
                continue
            before = revenue & (time < launch)
            last = np.full(n, -np.inf)
            np.maximum.at(last, cust[before], time[before])
            count = np.bincount(cust[before], minlength=n)
            spend = np.bincount(cust[before], weights=totals[before], minlength=n)
            pre = before & (time >= launch - 180 * DAY)
            pre_spend = np.bincount(cust[pre], weights=totals[pre], minlength=n)
            recency = (launch - last) / DAY
            who = np.flatnonzero((count > 0) & (recency > lapsed_days) & reachable)
            if len(who) == 0:
                continue
            in_window = revenue & (time > launch) & (time <= launch + window * DAY)
            natural_orders = np.bincount(cust[in_window], minlength=n)
            natural_revenue = np.bincount(cust[in_window], weights=totals[in_window], minlength=n)
            first_natural = np.full(n, np.inf)
            np.minimum.at(first_natural, cust[in_window], time[in_window])
            tau = np.where((count[who] >= 3) & (recency[who] <= 240), 0.30,
                           np.where(recency[who] > 365, 0.0, 0.04))
            # The order the offer would bring: the customer's usual basket, 15% off.
            usual = spend[who] / count[who] * rng.lognormal(-0.045, 0.3, len(who))
            product = (self.cust.preferred.to_numpy()[who] * 40 + rng.integers(40, size=len(who)))
            quantity = np.maximum(1, np.round(usual / prices[product])).astype(int)
            sub_cents = np.round(prices[product] * 100).astype(np.int64) * quantity
            discount = np.round(sub_cents * percent / 100).astype(np.int64)
            shipping = np.where(sub_cents - discount < 5000, 495, 0)
            offer_total = (sub_cents - discount + shipping) / 100
            group = np.array([campaigns.assigned_group(cid, int(c) + 1, share) for c in who], dtype=object)
            treated = group == "treatment"
            responds = rng.random(len(who)) < tau
            when = launch + rng.uniform(0.05, window - 0.05, len(who)) * DAY
            extra = treated & responds & (when < self.span)
            name = f"Win-back {pd.Timestamp(self.base + np.timedelta64(int(launch), 's')):%b %Y}"
            converted = natural_orders[who] > 0
            self.campaign_truth[name] = {
                "campaign_id": cid, "targets": len(who),
                "conversion_lift": float(np.mean(tau * ~converted)),
                "revenue_lift": float(np.mean(tau * offer_total)),
            }
            launched = pd.Timestamp(self.base + np.timedelta64(int(launch), "s"))
            rows.append({
                "id": cid, "name": name, "description": "Customers without an order for 60 days, 15% off.",
                "status": status, "channel": "email", "offer_type": "percent_discount", "offer_value": float(percent),
                "control_fraction": share, "trigger": {"kind": "no_order", "days": lapsed_days},
                "subject": "We miss you: 15% off your next order", "expected_lift": 0.03,
                "attribution_days": window, "gross_margin": 0.4, "starts_at": launched, "launched_at": launched,
                "ends_at": launched + pd.Timedelta(days=window) if status == "completed" else None,
                "finished_at": launched + pd.Timedelta(days=window) if status == "completed" else None,
                "created_by_id": analyst, "created_at": launched - pd.Timedelta(days=1), "version": 1,
            })
            k = len(who)
            extra_idx = np.flatnonzero(extra)
            first_extra = np.where(extra, when, np.inf)
            first_any = np.minimum(first_natural[who], first_extra)
            targets.append(pd.DataFrame({
                "id": np.arange(next_target, next_target + k), "campaign_id": cid, "customer_id": who + 1,
                "target_group": group, "assigned_at": launched,
                "contacted_at": _to_datetime(self.base, np.full(k, launch)).where(treated),
                "converted_at": _to_datetime(self.base, np.where(np.isfinite(first_any), first_any, 0)).where(
                    np.isfinite(first_any)),
                "revenue_after": np.round(natural_revenue[who] + np.where(extra, offer_total, 0), 2),
                "pre_period_spend": np.round(pre_spend[who], 2),
            }))
            next_target += k
            sent = who[treated]
            messages.append(pd.DataFrame({
                "id": np.arange(next_message, next_message + len(sent)), "customer_id": sent + 1,
                "channel": "email", "direction": "outbound", "status": "delivered", "campaign": name,
                "template": "percent_discount", "subject": "We miss you: 15% off your next order",
                "sent_at": launched, "delivered_at": launched + pd.Timedelta(minutes=2), "campaign_id": cid,
            }))
            next_message += len(sent)
            m = len(extra_idx)
            ids = np.arange(next_order, next_order + m)
            extra_orders.append(pd.DataFrame({
                "id": ids, "order_number": "SO-" + pd.Series(ids + 100_000).astype(str),
                "customer_id": who[extra_idx] + 1, "ordered_at": _to_datetime(self.base, when[extra_idx]),
                "status": np.where(self.span - when[extra_idx] < 5 * DAY, "paid", "delivered"), "channel": "web",
                "currency": platform.SHOP_CURRENCY, "subtotal": sub_cents[extra_idx] / 100,
                "discount": discount[extra_idx] / 100, "shipping": shipping[extra_idx] / 100,
                "total": offer_total[extra_idx], "item_count": 1,
            }))
            extra_items.append(pd.DataFrame({
                "id": np.arange(next_item, next_item + m), "order_id": ids, "product_id": product[extra_idx] + 1,
                "quantity": quantity[extra_idx], "unit_price": prices[product[extra_idx]],
                "line_total": sub_cents[extra_idx] / 100,
            }))
            next_order += m
            next_item += m
            # Each treated customer got the 15% off as a voucher valid for the window; a responder's
            # extra order redeemed it, the others lapsed at the window's end (or are still open).
            redeemed_by = np.full(k, -1, dtype=np.int64)
            redeemed_by[extra_idx] = ids
            mine = np.flatnonzero(treated)
            alphabet = np.array(list(platform.CODE_ALPHABET))
            closes = launched + pd.Timedelta(days=window)
            used = redeemed_by[mine] >= 0
            issued.append(pd.DataFrame({
                "code": ["".join(c) for c in alphabet[codes.integers(len(alphabet), size=(len(mine), 12))]],
                "customer_id": who[mine] + 1, "kind": "percent", "value": float(percent), "min_order": 0.0,
                "source": "campaign", "source_id": str(cid), "issued_at": launched, "expires_at": closes,
                "status": np.where(used, "redeemed", "expired" if launch + window * DAY < self.span else "issued"),
                "redeemed_order_id": _nullable_int(np.where(used, redeemed_by[mine], 0), used),
                "redeemed_at": _to_datetime(self.base, np.where(used, when[mine], 0)).where(used),
                "issued_by_id": analyst, "version": np.where(used, 2, 1),
            }))
            messages[-1]["body"] = [f"We miss you: 15% off your next order with code {c}" for c in issued[-1]["code"]]
        self.tables["customer_winback_campaigns"] = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["id"])
        self.tables["customer_winback_targets"] = (pd.concat(targets, ignore_index=True) if targets else
                                                   pd.DataFrame(columns=["id", "campaign_id", "customer_id"]))
        for name, parts in (("customer_communication_history", messages), ("orders", extra_orders),
                            ("order_items", extra_items)):
            parts = [p for p in parts if len(p)]
            if parts:
                frame = pd.concat(parts, ignore_index=True)
                self.appended.append((name, frame))
                self.tables[name] = pd.concat([self.tables[name], frame], ignore_index=True)
        if issued:  # loaded after the extra orders they were redeemed on
            vouchers = pd.concat(issued, ignore_index=True)
            vouchers.insert(0, "id", np.arange(1, len(vouchers) + 1))
            self.appended.append(("vouchers", vouchers))

    def _carts(self) -> None:
        """Carts of the last 60 days: the cart behind each order, and carts left without one."""
        rng = np.random.default_rng([self.seed, 18])
        since = self.span - 60 * DAY
        orders = self.tables["orders"]
        recent = np.flatnonzero((self.order_time >= since) & (orders["status"].to_numpy()[:len(self.order_time)] != "cancelled"))
        converted_at = self.order_time[recent]
        k = len(recent)
        items = self.tables["order_items"]
        item_rows = items[items["order_id"].isin(recent + 1)]
        signup = self.cust.signup.to_numpy()
        leavers = np.flatnonzero((rng.random(self.n) < 0.08) & (signup < self.span - DAY))
        a = len(leavers)
        left_at = np.maximum(since, signup[leavers]) + rng.random(a) * (self.span - np.maximum(since, signup[leavers]))
        products = self.tables["products"]
        count = 1 + rng.poisson(0.6, a)
        cart_of_item = np.repeat(np.arange(a), count)
        product = self.cust.preferred.to_numpy()[leavers][cart_of_item] * 40 + rng.integers(40, size=len(cart_of_item))
        price = products["unit_price"].to_numpy()[product]
        value = np.bincount(cart_of_item, weights=price, minlength=a)
        order_values = orders["subtotal"].to_numpy()[recent]
        self.tables["carts"] = pd.DataFrame({
            "id": np.arange(1, k + a + 1),
            "customer_id": np.concatenate([self.order_cust[recent], leavers]) + 1,
            "status": ["converted"] * k + ["open"] * a,
            "created_at": _to_datetime(self.base, np.concatenate([converted_at - rng.uniform(300, 7200, k),
                                                                 left_at - rng.uniform(60, 1800, a)])),
            "updated_at": _to_datetime(self.base, np.concatenate([converted_at - 60, left_at])),
            "value": np.round(np.concatenate([order_values, value]), 2),
            "order_id": _nullable_int(np.concatenate([recent + 1, np.zeros(a, dtype=int)]), np.arange(k + a) < k),
        })
        cart_id_of_order = pd.Series(np.arange(1, k + 1), index=recent + 1)
        self.tables["cart_items"] = pd.DataFrame({
            "id": np.arange(1, len(item_rows) + len(product) + 1),
            "cart_id": np.concatenate([cart_id_of_order.loc[item_rows["order_id"]].to_numpy(), k + 1 + cart_of_item]),
            "product_id": np.concatenate([item_rows["product_id"].to_numpy(), product + 1]),
            "quantity": np.concatenate([item_rows["quantity"].to_numpy(), np.ones(len(product), dtype=int)]),
            "unit_price": np.concatenate([item_rows["unit_price"].to_numpy(), price]),
        })


LOAD_ORDER = (
    "users", "customer_service_level_agreements", "products", "customers", "customer_addresses",
    "customer_payment_methods", "customer_preference_centers", "customer_gdpr_compliance",
    "customer_data_subject_requests", "orders", "order_items", "web_sessions",
    "customer_communication_history", "customer_support_tickets", "customer_support_ticket_responses",
    "customer_complaint_management", "customer_survey_responses", "customer_loyalty_programs",
    "customer_loyalty_transactions", "customer_loyalty_tier_changes",
    "customer_social_media_integrations", "customer_social_media_mentions",
    "customer_referral_program", "customer_referral_checks", "customer_referral_rewards",
    "customer_risk_assessments", "customer_sign_in_events",
    "customer_account_changes", "customer_chargebacks", "customer_identity_checks", "simulated_risk_truth",
    "customer_winback_campaigns", "customer_winback_targets", "vouchers", "carts", "cart_items",
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
    demo_users: bool = False,
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
        simulator = Simulator(n_customers, seed, end, demo_users=demo_users)
        for name, frame in _simulated_in_background(simulator):
            table = Base.metadata.tables[name]
            loaded = bulk.load(connection, table, frame)
            result.counts[name] = result.counts.get(name, 0) + loaded
            bulk.reset_sequence(connection, table)
            if progress:
                progress(name, loaded)
        if (settings := simulator.referral_settings) != referrals.DEFAULT_REFERRAL_SETTINGS:
            changed = {k: v for k, v in settings.items() if referrals.DEFAULT_REFERRAL_SETTINGS[k] != v}
            connection.execute(AppSetting.__table__.insert().values(
                key=referrals.REFERRAL_SETTINGS_KEY, value=changed, version=1, updated_at=dt.datetime.now()))
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
    result.campaign_truth = simulator.campaign_truth
    result.seconds = time.perf_counter() - started
    return result
