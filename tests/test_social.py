"""Social listening: sentiment on known sentences, handle matching, mention imports (bad rows, twice),
the figures the Social page reads, tickets from mentions and the Customer 360 timeline."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from sqlalchemy import func, select

from crm_core import customers, platform, social
from crm_core.social import sentiment as sentiment_module
from db.models import AuditLog, ImportRun, SocialMention, SupportTicket
from tests.factories import make_customer, make_user

NOW = dt.datetime(2025, 6, 1, 12, 0)

MENTIONS = (
    "mention_id,platform,author,text,posted_at,url,reach\n"
    "m1,twitter,@Anna_K,I love the new jacket from @shop! Fast delivery too.,2025-05-01 10:00:00 +0200,https://x.com/a/1,120\n"  # 2
    "m2,X,anna_k,Terrible service. My parcel is late and nobody answers.,2025-05-02 09:00,,50\n"  # 3 platform alias x
    "m3,instagram,bob.b,The packaging was ok I guess.,2025-05-03,,\n"  # 4 unmatched handle
    "m4,myspace,anna_k,Old network,2025-05-03,,\n"  # 5 bad platform
    "m5,twitter,,No author,2025-05-03,,\n"  # 6 author missing
    "m6,twitter,anna_k,From the future,2031-01-01,,\n"  # 7 future
    "m7,twitter,anna_k,Bad reach,2025-05-03,,many\n"  # 8 bad reach
    "m1,twitter,anna_k,Same id again,2025-05-04,,\n"  # 9 repeated in the file
    "m8,facebook,carl,\"Awful quality, broken after one day. Refund please!\",2025-05-05 12:00,,900\n"  # 10 matched (facebook)
    ",twitter,bob.b,no date,,,\n"  # 11 posted_at missing
)


def people(session):
    anna = make_customer(session, dt.datetime(2024, 1, 1), first_name="Anna", last_name="Kowalski")
    carl = make_customer(session, dt.datetime(2024, 1, 1), first_name="Carl", last_name="Berg")
    social.link_account(session, platform.SYSTEM, anna.id, "twitter", "@Anna_K", followers="1,200", verified=True)
    social.link_account(session, platform.SYSTEM, carl.id, "Facebook", "https://facebook.com/Carl/")
    return anna, carl


def run_import(session, data=MENTIONS, name="mentions.csv", **options):
    return social.import_mentions(session, platform.SYSTEM, io.BytesIO(data.encode()), file_name=name, now=NOW,
                                  **options)


@pytest.mark.parametrize(("text", "label"), [
    ("I love this shop, great service and fast delivery!", "positive"),
    ("This is the worst order ever. Broken and late, I am furious.", "negative"),
    ("The parcel arrived on Tuesday.", "neutral"),
    ("Not good at all.", "negative"),
    ("Absolutely amazing quality :)", "positive"),
])
def test_vader_scores_known_sentences(text, label):
    scores, name = social.score_texts([text])
    assert name == "vader"
    assert social.sentiment_label(scores[0]) == label
    assert -1 <= scores[0] <= 1


def test_labels_follow_vader_cutoffs():
    assert social.sentiment_label(0.05) == "positive"
    assert social.sentiment_label(0.0499) == "neutral"
    assert social.sentiment_label(-0.05) == "negative"
    assert social.sentiment_label(None) is None


class FixedScorer:
    name = "local-test-model"

    def score(self, texts):
        return [2.0 if "love" in t else -0.5 for t in texts]  # out of range on purpose: clipped


def fixed_scorer():
    return FixedScorer()


def test_a_local_scorer_plugs_in(monkeypatch):
    scores, name = social.score_texts(["love it", "meh"], FixedScorer())
    assert (scores, name) == ([1.0, -0.5], "local-test-model")
    monkeypatch.setenv(social.SCORER_ENV, "tests.test_social:fixed_scorer")
    sentiment_module._configured.cache_clear()
    try:
        assert social.current_scorer().name == "local-test-model"
        monkeypatch.setenv(social.SCORER_ENV, "no_such_module:factory")
        with pytest.raises(platform.ValidationError, match="Cannot load the sentiment scorer"):
            social.current_scorer()
        monkeypatch.setenv(social.SCORER_ENV, "nonsense")
        with pytest.raises(platform.ValidationError, match="package.module:factory"):
            social.current_scorer()
    finally:
        sentiment_module._configured.cache_clear()


@pytest.mark.parametrize(("raw", "handle"), [
    ("@Anna_K", "anna_k"), ("  anna_k ", "anna_k"), ("https://www.instagram.com/Anna.K/", "anna.k"),
    ("https://x.com/anna_k?s=20", "anna_k"),
])
def test_handles_are_normalised(raw, handle):
    assert social.normalize_handle(raw) == handle


@pytest.mark.parametrize("raw", ["", "@", "anna k", "a" * 101, "<script>"])
def test_bad_handles_are_refused(raw):
    with pytest.raises(platform.ValidationError):
        social.normalize_handle(raw)


def test_import_matches_by_handle_scores_and_reports_bad_rows(session, tmp_path):
    anna, carl = people(session)
    errors = tmp_path / "errors.csv"
    report = run_import(session, errors_path=errors)
    assert (report.rows_read, report.created, report.matched, report.invalid, report.skipped) == (10, 4, 3, 6, 0)
    rows = {m.external_id: m for m in session.scalars(select(SocialMention))}
    assert set(rows) == {"twitter:m1", "twitter:m2", "instagram:m3", "facebook:m8"}
    assert rows["twitter:m1"].customer_id == anna.id and rows["twitter:m2"].customer_id == anna.id
    assert rows["facebook:m8"].customer_id == carl.id
    assert rows["instagram:m3"].customer_id is None and rows["instagram:m3"].author == "bob.b"
    assert rows["twitter:m1"].posted_at == dt.datetime(2025, 5, 1, 8, 0)  # +02:00 stored in UTC
    assert rows["twitter:m1"].sentiment_label == "positive" and rows["twitter:m2"].sentiment_label == "negative"
    assert rows["facebook:m8"].sentiment_label == "negative" and rows["facebook:m8"].reach == 900
    assert all(m.sentiment_model == "vader" for m in rows.values())
    with errors.open() as handle:
        reasons = {int(r["row"]): r["reason"] for r in csv.DictReader(handle)}
    assert set(reasons) == {5, 6, 7, 8, 9, 11}
    assert "myspace" in reasons[5] and "author is missing" in reasons[6] and "in the future" in reasons[7]
    assert "reach 'many'" in reasons[8] and "earlier in the file (row 2)" in reasons[9]
    assert "posted_at is missing" in reasons[11]
    run = session.scalar(select(ImportRun).where(ImportRun.entity == "mentions"))
    assert (run.created, run.invalid) == (4, 6) and "3 of 4 new mentions matched" in run.message
    assert session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "mentions.import")) == 1


def test_importing_twice_adds_nothing_and_json_without_ids(session):
    people(session)
    assert run_import(session).created == 4
    again = run_import(session)
    assert (again.created, again.skipped) == (0, 4)
    records = [{"network": "tiktok", "handle": "zed", "message": "meh", "created_at": "2025-05-01T10:00:00Z"},
               {"network": "tiktok", "handle": "zed", "message": "meh", "created_at": "2025-05-02T10:00:00Z"}]
    data = json.dumps(records)
    assert run_import(session, data, "m.json").created == 2
    assert run_import(session, data, "m.json").skipped == 2
    assert session.scalar(select(func.count()).select_from(SocialMention)) == 6


def test_a_file_without_the_required_columns_is_refused(session):
    with pytest.raises(platform.ValidationError, match="needs a column for Author handle"):
        run_import(session, "platform,text,posted_at\ntwitter,hi,2025-01-01\n")


def test_importing_needs_the_permission(session):
    agent = make_user(session, "support_agent")
    with pytest.raises(platform.PermissionDenied):
        social.import_mentions(session, agent, io.BytesIO(MENTIONS.encode()), file_name="m.csv")


def test_linking_an_account_matches_earlier_mentions(session):
    people(session)
    run_import(session)
    bob = make_customer(session, dt.datetime(2024, 1, 1), first_name="Bob")
    linked = social.link_account(session, platform.SYSTEM, bob.id, "instagram", "Bob.B", followers=10)
    assert linked["mentions_matched"] == 1
    assert session.scalar(select(SocialMention.customer_id).where(SocialMention.external_id == "instagram:m3")) == bob.id
    with pytest.raises(platform.ConflictError, match="already linked to this customer"):
        social.link_account(session, platform.SYSTEM, bob.id, "instagram", "@bob.b")
    with pytest.raises(platform.ValidationError, match="Followers must be a whole number"):
        social.link_account(session, platform.SYSTEM, bob.id, "tiktok", "bob", followers="lots")
    accounts = social.customer_accounts(session, platform.SYSTEM, bob.id)
    assert [(a["platform"], a["handle"], a["followers"]) for a in accounts] == [("instagram", "bob.b", 10)]
    social.unlink_account(session, platform.SYSTEM, accounts[0]["id"])
    assert session.scalar(select(SocialMention.customer_id).where(SocialMention.external_id == "instagram:m3")) is None


def test_page_figures(session):
    anna, _ = people(session)
    run_import(session)
    f = social.MentionFilter(dt.date(2025, 5, 1), dt.date(2025, 5, 31))
    summary = social.mention_summary(session, platform.SYSTEM, f)
    assert (summary["mentions"], summary["negative"], summary["matched"], summary["customers"]) == (4, 2, 3, 2)
    assert summary["negative_share"] == 0.5
    volume = social.volume_over_time(session, platform.SYSTEM, f)
    assert volume["grain"] == "day"
    assert sum(r["mentions"] for r in volume["rows"]) == 4
    assert {(r["period"], r["platform"]) for r in volume["rows"]} >= {("2025-05-01", "twitter"), ("2025-05-05", "facebook")}
    twitter_only = social.MentionFilter(dt.date(2025, 5, 1), dt.date(2025, 5, 31), "x")
    assert social.mention_summary(session, platform.SYSTEM, twitter_only)["mentions"] == 2
    platforms = {r["platform"]: r for r in social.by_platform(session, platform.SYSTEM, f)}
    assert platforms["twitter"]["mentions"] == 2 and platforms["twitter"]["negative"] == 1
    worst = social.top_negative_mentions(session, platform.SYSTEM, f)
    assert worst.total == 2
    assert [r["customer"] for r in worst.rows] in (["Carl Berg", "Anna Kowalski"], ["Anna Kowalski", "Carl Berg"])
    assert worst.rows[0]["sentiment"] <= worst.rows[1]["sentiment"]
    topics = {r["term"]: r for r in social.topic_counts(session, platform.SYSTEM, f)}
    assert topics["Delivery"]["mentions"] == 2 and topics["Delivery"]["negative"] == 1
    assert topics["Quality"]["mentions"] == 1 and topics["Returns and refunds"]["negative"] == 1
    with pytest.raises(platform.ValidationError, match="after the end date"):
        social.mention_summary(session, platform.SYSTEM, social.MentionFilter(dt.date(2025, 6, 1), dt.date(2025, 5, 1)))
    with pytest.raises(platform.ValidationError, match="Platform"):
        social.mention_summary(session, platform.SYSTEM, social.MentionFilter(dt.date(2025, 5, 1), dt.date(2025, 5, 2), "myspace"))


def test_executives_see_mentions_without_customer_names(session):
    people(session)
    run_import(session)
    executive = make_user(session, "executive")
    rows = social.top_negative_mentions(session, executive, social.MentionFilter(dt.date(2025, 5, 1), dt.date(2025, 5, 31))).rows
    assert {r["customer"] for r in rows} == {"(matched)"} and {r["customer_id"] for r in rows} == {None}


def test_one_click_ticket_from_a_mention(session):
    anna, _ = people(session)
    run_import(session)
    agent = make_user(session, "support_agent")
    mention = session.scalar(select(SocialMention).where(SocialMention.external_id == "twitter:m2"))
    ticket = social.open_ticket_from_mention(session, agent, mention.id)
    assert (ticket.customer_id, ticket.channel, ticket.priority) == (anna.id, "social", "high")
    assert "parcel is late" in ticket.description and mention.ticket_id == ticket.id
    assert session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "mention.ticket")) == 1
    with pytest.raises(platform.ConflictError, match="already opened"):
        social.open_ticket_from_mention(session, agent, mention.id)
    unmatched = session.scalar(select(SocialMention).where(SocialMention.external_id == "instagram:m3"))
    with pytest.raises(platform.ValidationError, match="not matched to a customer"):
        social.open_ticket_from_mention(session, agent, unmatched.id)
    with pytest.raises(platform.PermissionDenied):
        social.open_ticket_from_mention(session, make_user(session, "analyst"), unmatched.id)
    assert session.scalar(select(func.count()).select_from(SupportTicket)) == 1
    f = social.MentionFilter(dt.date(2025, 5, 1), dt.date(2025, 5, 31))
    assert social.mention_summary(session, platform.SYSTEM, f)["tickets"] == 1


def test_mentions_on_the_customer_360_timeline(session):
    anna, _ = people(session)
    run_import(session)
    feed = customers.timeline(session, platform.SYSTEM, anna.id, kinds=["mention"])
    assert feed.total == 2
    assert feed.rows[0]["event"] == "Twitter mention (negative)" and "parcel is late" in feed.rows[0]["detail"]


def test_simulated_mentions_carry_their_author_and_a_text_that_fits_their_sentiment():
    import demo

    tables = demo.Simulator(600, seed=3, end=dt.datetime(2026, 6, 1)).build()
    mentions = tables["customer_social_media_mentions"]
    accounts = tables["customer_social_media_integrations"].set_index("id")
    assert len(mentions) > 10
    assert list(mentions["author"]) == list(accounts.loc[mentions["social_account_id"], "handle"])
    scores, _ = social.score_texts(list(mentions["text"]))
    agree = sum(social.sentiment_label(s) == label for s, label in zip(scores, mentions["sentiment_label"], strict=True))
    assert agree / len(mentions) > 0.95


def test_terms_are_stored_at_import_and_again_when_the_catalogue_changes(session):
    from decimal import Decimal

    from db.models import Product, SocialMentionTerm

    people(session)
    run_import(session)
    stored = {(t.term, t.kind) for t in session.scalars(select(SocialMentionTerm))}
    assert {("Delivery", "topic"), ("Quality", "topic"), ("Packaging", "topic")} <= stored
    session.add(Product(sku="J-1", name="Jacket", category="Fashion", brand="Nordwind", unit_price=Decimal("80")))
    session.flush()
    found = social.tag_mentions(session)
    assert found["mentions"] == 4
    f = social.MentionFilter(dt.date(2025, 5, 1), dt.date(2025, 5, 31))
    terms = {(r["term"], r["kind"]): r for r in social.topic_counts(session, platform.SYSTEM, f, limit=50)}
    assert terms[("Jacket", "product")]["mentions"] == 1 and terms[("Jacket", "product")]["negative"] == 0
    with pytest.raises(platform.ValidationError, match="between 1 and 100"):
        social.topic_counts(session, platform.SYSTEM, f, limit=0)


def test_the_term_matcher_prefers_the_longer_word():
    from crm_core.social.topics import TOPIC_KEYWORDS, term_matcher

    terms = [("topic", name, words) for name, words in TOPIC_KEYWORDS.items()]
    found = term_matcher(terms)("Customer service never answered; the parcel was LATE. Refund!")
    assert found == [("Customer service", "topic"), ("Delivery", "topic"), ("Returns and refunds", "topic")]
