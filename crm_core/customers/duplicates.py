"""Duplicate scan: blocking plus fuzzy scoring fills a review queue of candidate pairs.

Blocking keeps the work near-linear: only customers that share a cheap key are compared —
the same normalised email local part, the same phone digits, the same postal code, or the same
first three letters of the last name with the same first initial and country. Inside each block
names are compared all-against-all with `rapidfuzz.process.cdist`; the surviving pairs are scored
together with `rapidfuzz.process.cpdist` on names, emails, phones and addresses; a given name that is
a nickname of the other's ('Bob', 'Robert'; the `nicknames` dataset) scores as that name. Each pair keeps
its score and the reasons it matched. A re-scan updates open pairs and never duplicates a pair or
reopens one a reviewer dismissed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from nicknames import name_triplets
from rapidfuzz import fuzz, process
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session, aliased

from crm_core.customers.rules import COUNTED_CUSTOMER, GONE_STATUSES
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.paging import Page
from crm_core.platform.permissions import require
from crm_core.platform.transactions import check_version
from db.models import DUPLICATE_STATUSES, Customer, CustomerAddress, DuplicateCandidate, utcnow

MIN_SCORE = 0.6
MAX_BLOCK = 400          # larger blocks are cut into windows of this size, ordered by name
NAME_CUTOFF = 85         # name similarity (0-100) a last-name block needs before a pair is scored
WEIGHTS = {"name": 0.4, "email": 0.3, "phone": 0.25, "address": 0.1}
BATCH = 5000

Progress = Callable[[float, str], None]


def _frame(session: Session) -> pd.DataFrame:
    """Counted customers with their default (else any) postal code, read in one streamed query."""
    postal = (
        select(CustomerAddress.customer_id, func.max(CustomerAddress.postal_code).label("postal_code"))
        .group_by(CustomerAddress.customer_id).subquery()
    )
    query = (
        select(Customer.id, Customer.first_name, Customer.last_name, Customer.email, Customer.phone,
               Customer.country_code, Customer.city, postal.c.postal_code)
        .outerjoin(postal, postal.c.customer_id == Customer.id)
        .where(COUNTED_CUSTOMER)
        .order_by(Customer.id)
    )
    result = session.execute(query.execution_options(yield_per=BATCH))
    frames = [pd.DataFrame(chunk, columns=list(result.keys())) for chunk in result.partitions()]
    columns = ["id", "first_name", "last_name", "email", "phone", "country_code", "city", "postal_code"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _fold(values: pd.Series) -> pd.Series:
    """Lower case without accents: 'María' and 'Maria' block and compare alike."""
    text = values.fillna("").astype(str).str.strip().str.lower().str.normalize("NFKD")
    return text.str.encode("ascii", "ignore").str.decode("ascii")


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Blocking keys and comparison strings, vectorised."""
    out = pd.DataFrame({"id": df["id"].astype(np.int64)})
    first, last = (_fold(df[c]) for c in ("first_name", "last_name"))
    out["name"] = (first + " " + last).str.replace(r"[^a-z0-9 ]", "", regex=True).str.strip()
    out["first"] = first.str.replace(r"[^a-z]", "", regex=True)
    out["last"] = last.str.replace(r"[^a-z0-9 ]", "", regex=True).str.strip()
    email = df["email"].fillna("").astype(str).str.strip().str.lower()
    local = email.str.split("@").str[0].fillna("").str.split("+").str[0].str.replace(".", "", regex=False)
    out["email"] = email
    out["email_local"] = local
    digits = df["phone"].fillna("").astype(str).str.replace(r"\D", "", regex=True)
    out["phone"] = digits.str[-9:].where(digits.str.len() >= 7, "")
    out["postal"] = df["postal_code"].fillna("").astype(str).str.replace(" ", "").str.upper()
    out["city"] = df["city"].fillna("").astype(str).str.strip().str.lower()
    country = df["country_code"].fillna("").astype(str).str.upper()
    last_key = last.str.replace(r"[^a-z]", "", regex=True).str[:3]
    out["key_email"] = ("e:" + local).where(local.str.len() >= 3, "")
    out["key_phone"] = ("p:" + out["phone"]).where(out["phone"] != "", "")
    out["key_postal"] = ("z:" + country + out["postal"]).where(out["postal"] != "", "")
    out["key_name"] = ("n:" + last_key + first.str[:1] + country).where(last_key.str.len() >= 2, "")
    return out


# Names compare as typed and with their words sorted (a swapped first and last name), the better of
# the two: sorting alone reorders a typo ('haarry hanson' sorts before its surname, 'harry hanson' after).
NAME_SCORERS = (fuzz.ratio, fuzz.token_sort_ratio)


@cache
def _name_groups() -> pd.DataFrame:
    """Each given name in the nicknames dataset with each name it stands for, a row apiece: itself and
    every formal name it is a nickname of ('bob' -> bob, robert, ...)."""
    triplets = pd.DataFrame(name_triplets(), columns=["formal", "relation", "nickname"])
    pairs = pd.concat([triplets[["formal", "formal"]].set_axis(["name", "group"], axis=1),
                       triplets[["nickname", "nickname"]].set_axis(["name", "group"], axis=1),
                       triplets[["nickname", "formal"]].set_axis(["name", "group"], axis=1)])
    return pairs.drop_duplicates(ignore_index=True)


def nickname_pairs(first_a: pd.Series, first_b: pd.Series) -> np.ndarray:
    """Whether each pair's given names differ but stand for the same name: a nickname and its formal
    name ('Bob' and 'Robert'), or two nicknames of one name ('Bob' and 'Rob'). Two joins on the
    dataset, not a loop over the pairs."""
    groups = _name_groups()
    pairs = pd.DataFrame({"a": first_a.to_numpy(), "b": first_b.to_numpy(), "pair": np.arange(len(first_a))})
    pairs = pairs[pairs["a"] != pairs["b"]]
    of_a = pairs.merge(groups, left_on="a", right_on="name")[["pair", "group"]]
    of_b = pairs.merge(groups, left_on="b", right_on="name")[["pair", "group"]]
    found = np.zeros(len(first_a), dtype=bool)
    found[of_a.merge(of_b, on=["pair", "group"])["pair"].unique()] = True
    return found


def _block_pairs(people: pd.DataFrame, key: str, cutoff: int | None) -> list[np.ndarray]:
    """Index pairs (into `people`) that share `key`; name-similar only when a cutoff is given."""
    keyed = people[people[key] != ""]
    sizes = keyed.groupby(key, sort=False)[key].transform("size")
    keyed = keyed[sizes >= 2].sort_values([key, "name"])
    found = []
    names = people["name"].to_numpy()
    for _, positions in keyed.groupby(key, sort=False).indices.items():
        rows = keyed.index.to_numpy()[positions]
        for start in range(0, len(rows), MAX_BLOCK):
            window = rows[start:start + MAX_BLOCK + 1]  # overlap one row between windows
            if len(window) < 2:
                continue
            if cutoff is None:
                i, j = np.triu_indices(len(window), k=1)
            else:
                matrix = np.maximum(*(process.cdist(names[window], names[window], scorer=scorer, score_cutoff=cutoff,
                                                    dtype=np.uint8, workers=-1) for scorer in NAME_SCORERS))
                i, j = np.nonzero(np.triu(matrix, k=1))
            if len(i):
                found.append(np.stack([window[i], window[j]], axis=1))
    return found


def candidate_pairs(people: pd.DataFrame) -> np.ndarray:
    """Unique (i, j) row-position pairs, i < j, from every blocking key."""
    pieces = []
    pieces += _block_pairs(people, "key_email", None)
    pieces += _block_pairs(people, "key_phone", None)
    pieces += _block_pairs(people, "key_postal", 60)
    pieces += _block_pairs(people, "key_name", NAME_CUTOFF)
    if not pieces:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.sort(np.concatenate(pieces), axis=1)
    return np.unique(pairs, axis=0)


def score_pairs(people: pd.DataFrame, pairs: np.ndarray) -> pd.DataFrame:
    """Score every pair at once; keep those at or above MIN_SCORE with their reasons."""
    if not len(pairs):
        return pd.DataFrame(columns=["a", "b", "score", "reasons"])
    a, b = people.iloc[pairs[:, 0]].reset_index(drop=True), people.iloc[pairs[:, 1]].reset_index(drop=True)
    name = np.maximum(*(process.cpdist(a["name"].tolist(), b["name"].tolist(), scorer=scorer, workers=-1)
                        for scorer in NAME_SCORERS)) / 100
    # A nickname scores as the name it stands for: 'bob smith' compares as 'robert smith'.
    nickname = nickname_pairs(a["first"], b["first"]) & (name < 0.999)
    if nickname.any():
        as_formal = (b["first"] + " " + a["last"]).str.strip()[nickname].tolist()
        name[nickname] = np.maximum(name[nickname], process.cpdist(
            as_formal, b["name"][nickname].tolist(), scorer=fuzz.ratio, workers=-1) / 100)
    has_email = (a["email"] != "") & (b["email"] != "")
    email_same = has_email & (a["email"] == b["email"])
    email_sim = process.cpdist(a["email_local"].tolist(), b["email_local"].tolist(), scorer=fuzz.ratio, workers=-1) / 100
    email_sim = np.where(has_email, email_sim, 0.0)
    # A near-identical local part counts only with the same digits: 'maria.garcia12' and
    # 'maria.garcia77' are two namesakes, 'mariagarcia' and 'mariagarica' one person's typo.
    same_digits = (a["email_local"].str.replace(r"\D", "", regex=True)
                   == b["email_local"].str.replace(r"\D", "", regex=True)).to_numpy()
    email_sim = np.where(same_digits, email_sim, 0.0)
    email = np.where(email_same, 1.0, np.where(email_sim >= 0.88, email_sim * 0.8, 0.0))
    phone_same = ((a["phone"] != "") & (a["phone"] == b["phone"])).to_numpy()
    postal_same = ((a["postal"] != "") & (a["postal"] == b["postal"])).to_numpy()
    city_same = ((a["city"] != "") & (a["city"] == b["city"])).to_numpy()
    address = np.where(postal_same, 1.0, np.where(city_same, 0.5, 0.0))
    score = (WEIGHTS["name"] * name + WEIGHTS["email"] * email + WEIGHTS["phone"] * phone_same
             + WEIGHTS["address"] * address)
    score = np.clip(score, 0, 1).round(3)
    keep = score >= MIN_SCORE
    reasons = []
    for k in np.flatnonzero(keep):
        why = []
        if email_same.iloc[k]:
            why.append("same email")
        elif email[k] > 0:
            why.append(f"email {email_sim[k]:.0%} similar")
        if phone_same[k]:
            why.append("same phone")
        why.append("same name" if name[k] >= 0.999 else f"name {name[k]:.0%} similar")
        if nickname[k]:
            why[-1] += f" ({a['first'].iloc[k].title()} = {b['first'].iloc[k].title()})"
        if postal_same[k]:
            why.append("same postal code")
        elif city_same[k]:
            why.append("same city")
        reasons.append(why)
    return pd.DataFrame({"a": a["id"].to_numpy()[keep], "b": b["id"].to_numpy()[keep],
                         "score": score[keep], "reasons": reasons})


def scan_duplicates(session: Session, actor: Actor, progress: Progress | None = None) -> dict[str, Any]:
    """Scan every counted customer and fill the review queue; returns counts and timing."""
    require(actor, "customers.merge")
    started = time.perf_counter()

    def step(fraction: float, text: str) -> None:
        if progress:
            progress(fraction, text)

    step(0.05, "Reading customers")
    people = normalise(_frame(session))
    step(0.35, f"Blocking {len(people):,} customers")
    pairs = candidate_pairs(people)
    step(0.6, f"Scoring {len(pairs):,} candidate pairs")
    scored = score_pairs(people, pairs)
    step(0.8, f"Saving {len(scored):,} likely duplicates")
    existing = {
        (row.customer_a_id, row.customer_b_id): (row.id, row.status)
        for row in session.execute(select(DuplicateCandidate.id, DuplicateCandidate.customer_a_id,
                                          DuplicateCandidate.customer_b_id, DuplicateCandidate.status))
    }
    now = utcnow()
    new_rows, updates = [], []
    for a, b, score, reasons in scored.itertuples(index=False):
        key = (int(a), int(b))
        if key not in existing:
            new_rows.append({"customer_a_id": key[0], "customer_b_id": key[1], "score": float(score),
                             "reasons": reasons, "status": "open", "detected_at": now, "version": 1})
        elif existing[key][1] == "open":
            updates.append({"id": existing[key][0], "score": float(score), "reasons": reasons, "detected_at": now})
    if new_rows:
        session.execute(DuplicateCandidate.__table__.insert(), new_rows)
    if updates:
        table = DuplicateCandidate.__table__
        session.execute(
            update(table).where(table.c.id == bindparam("pk"))
            .values(score=bindparam("score"), reasons=bindparam("reasons"), detected_at=bindparam("detected_at"),
                    version=table.c.version + 1),
            [{"pk": u["id"], "score": u["score"], "reasons": u["reasons"], "detected_at": u["detected_at"]}
             for u in updates],
        )
    result = {"customers": len(people), "candidate_pairs": int(len(pairs)), "likely_duplicates": int(len(scored)),
              "new": len(new_rows), "updated": len(updates), "seconds": round(time.perf_counter() - started, 2)}
    record_audit(session, actor, "duplicates.scan", "duplicates", None, after=result)
    session.flush()
    step(1.0, "Done")
    return result


def duplicate_queue(session: Session, viewer: Actor, status: str = "open", page: int = 1, page_size: int = 25,
          min_score: float = 0.0) -> Page:
    """Candidate pairs, best first, with both customers' key fields."""
    require(viewer, "customers.merge")
    if status not in DUPLICATE_STATUSES:
        raise ValidationError(f"Status must be one of {', '.join(DUPLICATE_STATUSES)}.")
    page = max(1, int(page))
    a, b = aliased(Customer), aliased(Customer)
    conditions = [DuplicateCandidate.status == status, DuplicateCandidate.score >= float(min_score)]
    if status == "open":
        conditions += [a.status.not_in(GONE_STATUSES), b.status.not_in(GONE_STATUSES)]
    base = (select(DuplicateCandidate, a, b)
            .join(a, a.id == DuplicateCandidate.customer_a_id)
            .join(b, b.id == DuplicateCandidate.customer_b_id)
            .where(*conditions))
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    found = session.execute(base.order_by(DuplicateCandidate.score.desc(), DuplicateCandidate.id)
                            .limit(page_size).offset((page - 1) * page_size)).all()
    rows = [{
        "pair_id": c.id, "score": c.score, "reasons": ", ".join(c.reasons or []),
        "customer_a": ca.id, "name_a": f"{ca.first_name} {ca.last_name}".strip(), "email_a": ca.email,
        "customer_b": cb.id, "name_b": f"{cb.first_name} {cb.last_name}".strip(), "email_b": cb.email,
        "status": c.status, "detected_at": c.detected_at, "version": c.version, "merge_id": c.merge_id,
    } for c, ca, cb in found]
    return Page(rows=rows, total=total, page=page, page_size=page_size)


def duplicate_counts(session: Session, viewer: Actor) -> dict[str, int]:
    require(viewer, "customers.merge")
    found = dict(session.execute(select(DuplicateCandidate.status, func.count()).group_by(DuplicateCandidate.status)).all())
    return {s: int(found.get(s, 0)) for s in DUPLICATE_STATUSES}


def duplicate_score_histogram(session: Session, viewer: Actor) -> list[dict[str, Any]]:
    """Open pairs per score band (tenths), for a chart."""
    require(viewer, "customers.merge")
    band = func.floor(DuplicateCandidate.score * 10)
    found = session.execute(select(band.label("band"), func.count()).where(DuplicateCandidate.status == "open")
                            .group_by(band).order_by(band)).all()
    return [{"score_from": float(b) / 10, "pairs": int(n)} for b, n in found]


def dismiss_duplicate(session: Session, actor: Actor, pair_id: int, expected_version: int | None = None) -> DuplicateCandidate:
    """Mark a pair as not the same person; a re-scan keeps it dismissed."""
    require(actor, "customers.merge")
    candidate = session.get(DuplicateCandidate, pair_id)
    if candidate is None:
        raise NotFound(f"There is no candidate pair {pair_id}.")
    check_version(candidate, expected_version, f"Pair {pair_id}")
    if candidate.status != "open":
        raise ValidationError(f"Pair {pair_id} is already {candidate.status}.")
    candidate.status = "dismissed"
    candidate.reviewed_at = utcnow()
    candidate.reviewed_by_id = actor.id
    record_audit(session, actor, "duplicates.dismiss", "duplicate_pair", pair_id,
                 before={"status": "open"}, after={"status": "dismissed"})
    session.flush()
    return candidate
