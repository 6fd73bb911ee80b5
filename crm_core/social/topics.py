"""What mentions talk about: service topics (a fixed lexicon), and the shop's categories, brands and
(for a small catalogue) product names. A mention names a term when its lower-cased text holds one of
the term's words. Matches are stored per mention (`customer_social_mention_terms`) when mentions are
imported and again by the batch refresh (the catalogue changes), so the Social page counts them with
one GROUP BY over a date range instead of scanning every text for every term.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pandas as pd
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db import bulk
from db.models import Product, SocialMention, SocialMentionTerm

# Service topics people write about, each with the words that count as a mention of it.
TOPIC_KEYWORDS: dict[str, tuple[str, ...]] = {
    "Delivery": ("deliver", "parcel", "shipping", "shipment", "courier", "arrived", "tracking", "late"),
    "Returns and refunds": ("return", "refund", "exchange", "money back"),
    "Price": ("price", "expensive", "cheap", "discount", "sale", "overpriced", "coupon", "voucher"),
    "Quality": ("quality", "broken", "broke", "defect", "damaged", "faulty", "fell apart"),
    "Customer service": ("customer service", "support", "helpful", "rude", "staff", "agent", "no answer"),
    "Website and app": ("website", " app", "checkout", "login", "password", "crash"),
    "Packaging": ("packaging", "box", "wrapped", "plastic"),
    "Size and fit": ("size", "fit ", "too small", "too big", "too large"),
}
MAX_PRODUCT_NAMES = 300  # a catalogue this small has each product name counted too
MAX_NAMED_TERMS = 60  # categories and brands counted (the ones with the most products)
TAG_BATCH = 20_000

Term = tuple[str, str, tuple[str, ...]]  # kind, name, lower-case words


def topic_terms(session: Session) -> list[Term]:
    """The terms to look for: service topics, then categories, brands and product names."""
    terms: list[Term] = [("topic", name, words) for name, words in TOPIC_KEYWORDS.items()]
    p = Product
    for kind, column in (("category", p.category), ("brand", p.brand)):
        names = session.scalars(select(column).where(column.is_not(None), column != "").group_by(column)
                                .order_by(func.count().desc(), column).limit(MAX_NAMED_TERMS)).all()
        for name in names:
            words = {name.lower()}
            first = re.split(r"[\s&,]+", name.lower())[0]
            if kind == "category" and len(first) >= 4:
                words.add(first)
            terms.append((kind, name, tuple(sorted(words))))
    products = session.scalar(select(func.count()).select_from(p).where(p.is_active)) or 0
    if 0 < products <= MAX_PRODUCT_NAMES:
        for name in session.scalars(select(p.name).where(p.is_active).order_by(p.id)):
            if name and len(name) >= 4:
                terms.append(("product", name[:200], (name.lower(),)))
    return terms


def term_matcher(terms: list[Term]) -> Callable[[str], list[tuple[str, str]]]:
    """A function from a text to the (term, kind) pairs it names, each once.

    One regular expression finds every word of every term (longest first); words that overlap
    ("customer service" and "service") count for the longer one.
    """
    owners: dict[str, list[tuple[str, str]]] = {}
    for kind, name, words in terms:
        for word in words:
            owners.setdefault(word, []).append((name, kind))
    if not owners:
        return lambda text: []
    pattern = re.compile("|".join(re.escape(w) for w in sorted(owners, key=len, reverse=True)))

    def match(text: str) -> list[tuple[str, str]]:
        found: dict[tuple[str, str], None] = {}
        for hit in pattern.finditer(text.lower()):
            for owner in owners[hit.group(0)]:
                found[owner] = None
        return list(found)

    return match


def tag_mentions(session: Session, since_id: int = 0) -> dict[str, Any]:
    """Store the terms of the mentions with an id above `since_id` (all of them by default), replacing
    what was stored for them; in batches of ids, written in bulk."""
    match = term_matcher(topic_terms(session))
    m, t = SocialMention.__table__.c, SocialMentionTerm.__table__
    connection = session.connection()
    session.execute(delete(SocialMentionTerm).where(SocialMentionTerm.mention_id > since_id))
    mentions = tags = 0
    cursor = since_id
    while True:
        _, rows = bulk.fetch_raw(connection, select(m.id, m.text, m.posted_at, m.platform, m.sentiment_label)
                                 .where(m.id > cursor).order_by(m.id).limit(TAG_BATCH))
        if not rows:
            break
        cursor = rows[-1][0]
        mentions += len(rows)
        found = [(mention_id, term, kind, posted, platform, label == "negative")
                 for mention_id, text, posted, platform, label in rows for term, kind in match(text or "")]
        if found:
            frame = pd.DataFrame(found, columns=["mention_id", "term", "kind", "posted_at", "platform", "negative"])
            frame["posted_at"] = pd.to_datetime(frame["posted_at"], format="ISO8601")
            bulk.load(connection, t, frame)
            tags += len(found)
    return {"mentions": mentions, "terms": tags}
