"""Brand mentions imported from CSV, Excel or JSON, matched to customers by handle and scored.

Columns (* required; other names a listening tool uses are understood, e.g. `handle`, `message`,
`created_at`, `link`):

    mention_id   the listening tool's id of the post; without one, the link, else a key made of
                 the platform, author, time and text, so a mention imported before is skipped
    platform*    twitter (x), facebook, instagram, linkedin, tiktok, youtube
    author*      the author's handle (@ and case ignored); matched to a customer's social account
    text*        the post (at most 10,000 characters)
    posted_at*   when it was posted (a time with an offset is stored in UTC)
    url          the link to the post (at most 500 characters)
    reach        how many people saw it (a whole number, 0 or more)

Every mention gets a sentiment score and label from the configured scorer (VADER by default). A
row with a problem goes to the error file with its row number and reason and nothing else of it
is written; the import is one transaction with one import run and one audit row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from crm_core.imports.files import Progress, RawRow, Source, TableReader
from crm_core.imports.runs import ErrorSink, ImportReport, PreviewRow, batches, finish_run, start_run
from crm_core.imports.values import parse_datetime
from crm_core.platform.actors import Actor
from crm_core.platform.errors import ValidationError
from crm_core.platform.permissions import require
from crm_core.social.accounts import normalize_handle, normalize_platform
from crm_core.social.sentiment import SentimentScorer, score_texts, sentiment_label
from crm_core.social.topics import tag_mentions
from db import bulk
from db.models import SocialAccount, SocialMention, utcnow

MENTION_FIELDS = {"mention_id": "Mention id", "platform": "Platform", "author": "Author handle", "text": "Text",
                  "posted_at": "Posted at", "url": "Link", "reach": "Reach"}
REQUIRED = ("platform", "author", "text", "posted_at")
ALIASES = {
    "id": "mention_id", "post_id": "mention_id", "tweet_id": "mention_id", "network": "platform",
    "source": "platform", "site": "platform", "handle": "author", "user": "author", "username": "author",
    "screen_name": "author", "author_handle": "author", "message": "text", "content": "text", "body": "text",
    "post": "text", "time": "posted_at", "date": "posted_at", "created_at": "posted_at", "timestamp": "posted_at",
    "published_at": "posted_at", "posted": "posted_at", "link": "url", "permalink": "url", "post_url": "url",
    "impressions": "reach", "views": "reach",
}
MAX_TEXT = 10_000
MAX_URL = 500
CHUNK = 5_000


def _normalized(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def documented_mention_columns() -> str:
    """The documented columns (this module's docstring), for `crm import mentions --help`."""
    doc = __doc__ or ""
    return "columns (* required):\n" + doc[doc.index("    mention_id"):].split("\n\n")[0]


def default_mention_mapping(columns: list[str]) -> dict[str, str]:
    """File column -> field for the columns named like a field or a common alias of one."""
    mapping: dict[str, str] = {}
    for column in columns:
        name = _normalized(column)
        target = name if name in MENTION_FIELDS else ALIASES.get(name)
        if target and target not in mapping.values():
            mapping[column] = target
    return mapping


def check_mention_columns(mapping: dict[str, str], columns: list[str]) -> None:
    missing = [MENTION_FIELDS[f] for f in REQUIRED if f not in mapping.values()]
    if missing:
        raise ValidationError(f"The mentions file needs a column for {', '.join(missing)} "
                              f"(its columns: {', '.join(columns)}).")


@dataclass
class MentionReport(ImportReport):
    matched: int = 0

    def figures(self) -> list[tuple[str, int]]:
        return [("rows read", self.rows_read), ("mentions imported", self.created),
                ("matched to customers", self.matched), ("skipped (already imported)", self.skipped),
                ("invalid", self.invalid)]


def _record(raw: RawRow, mapping: dict[str, str], now: dt.datetime) -> tuple[dict[str, Any], list[str]]:
    values = {field: (raw.values.get(column) or "").strip() for column, field in mapping.items()}
    reasons: list[str] = [f"the row {raw.problem}"] if raw.problem else []
    record: dict[str, Any] = {}
    for field in REQUIRED:
        if not values.get(field):
            reasons.append(f"{field} is missing")
    if values.get("platform"):
        try:
            record["platform"] = normalize_platform(values["platform"])
        except ValidationError as exc:
            reasons.append(str(exc).rstrip("."))
    if values.get("author"):
        try:
            record["author"] = normalize_handle(values["author"])
        except ValidationError as exc:
            reasons.append(str(exc).rstrip("."))
    text = values.get("text", "")
    if len(text) > MAX_TEXT:
        reasons.append(f"text is longer than {MAX_TEXT:,} characters")
    record["text"] = text
    if values.get("posted_at"):
        try:
            posted = parse_datetime(values["posted_at"])
        except ValidationError as exc:
            reasons.append(f"posted_at: {exc}")
        else:
            if posted > now + dt.timedelta(days=1):
                reasons.append(f"posted_at {values['posted_at']!r} is in the future")
            elif posted.year < 1900:
                reasons.append(f"posted_at {values['posted_at']!r} is before 1900")
            record["posted_at"] = posted
    url = values.get("url") or None
    if url and len(url) > MAX_URL:
        reasons.append(f"url is longer than {MAX_URL} characters")
    record["url"] = url
    reach = values.get("reach", "")
    record["reach"] = 0
    if reach:
        if re.fullmatch(r"\d{1,10}(?:\.0+)?", reach.replace(",", "")) and int(float(reach.replace(",", ""))) < 2**31:
            record["reach"] = int(float(reach.replace(",", "")))
        else:
            reasons.append(f"reach {reach!r} is not a whole number of 0 or more")
    mention_id = values.get("mention_id", "")
    if len(mention_id) > 80:
        reasons.append("mention_id is longer than 80 characters")
    if not reasons:
        record["external_id"] = _key(record, mention_id)
    return record, reasons


def _key(record: dict[str, Any], mention_id: str) -> str:
    """The mention's import key: the tool's id, else its link, else a hash of what it says."""
    if mention_id:
        return f"{record['platform']}:{mention_id}"
    if record["url"]:
        return "url:" + hashlib.sha1(record["url"].encode()).hexdigest()
    parts = [record["platform"], record["author"], record["posted_at"].isoformat(), record["text"]]
    return "sha1:" + hashlib.sha1("\x1f".join(parts).encode()).hexdigest()


def preview_mentions(source: Source, *, file_name: str | None = None, limit: int = 20,
                     now: dt.datetime | None = None) -> tuple[list[str], list[PreviewRow]]:
    """The file's columns and its first rows with their status (customers are matched on import)."""
    now = now or utcnow()
    with TableReader(source, "auto", file_name) as reader:
        mapping = default_mention_mapping(reader.columns)
        check_mention_columns(mapping, reader.columns)
        rows: list[PreviewRow] = []
        for raw in reader.rows():
            _, reasons = _record(raw, mapping, now)
            rows.append(PreviewRow(raw.number, raw.values, "invalid" if reasons else "ok", "; ".join(reasons)))
            if len(rows) >= limit:
                break
        return reader.columns, rows


def _accounts(session: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int]]:
    """(platform, handle) -> (account id, customer id) for the handles that belong to a customer."""
    found: dict[tuple[str, str], tuple[int, int]] = {}
    a = SocialAccount.__table__.c
    for batch in batches(sorted(keys), 400):
        for row in session.execute(select(a.platform, a.handle, a.id, a.customer_id)
                                   .where(tuple_(a.platform, a.handle).in_(batch))):
            found[(row.platform, row.handle)] = (row.id, row.customer_id)
    return found


def import_mentions(session: Session, actor: Actor, source: Source, *, fmt: str = "auto", file_name: str | None = None,
                    errors_path: str | os.PathLike | None = None, scorer: SentimentScorer | None = None,
                    chunk_size: int = CHUNK, progress: Progress | None = None,
                    now: dt.datetime | None = None) -> MentionReport:
    """Import a file of mentions (see the module docstring) into the caller's session."""
    require(actor, "social.import")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValidationError("The chunk size must be a positive whole number.")
    now = now or utcnow()
    started = time.perf_counter()
    table = SocialMention.__table__
    with TableReader(source, fmt, file_name) as reader:
        mapping = default_mention_mapping(reader.columns)
        check_mention_columns(mapping, reader.columns)
        report = MentionReport("mentions", Path(reader.name or "upload").name, reader.format)
        run = start_run(session, actor, "mentions", reader, None)
        sink = ErrorSink(errors_path)
        first_rows: dict[str, int] = {}
        model_name = ""
        before = session.scalar(select(func.coalesce(func.max(table.c.id), 0))) or 0
        try:
            chunk: list[tuple[int, dict[str, Any]]] = []

            def flush() -> None:
                nonlocal model_name
                existing: set[str] = set()
                for batch in batches(sorted(record["external_id"] for _, record in chunk)):
                    existing |= set(session.scalars(select(table.c.external_id).where(table.c.external_id.in_(batch))))
                fresh = [record for _, record in chunk if record["external_id"] not in existing]
                report.skipped += len(chunk) - len(fresh)
                chunk.clear()
                if not fresh:
                    return
                accounts = _accounts(session, {(r["platform"], r["author"]) for r in fresh})
                scores, model_name = score_texts([r["text"] for r in fresh], scorer)
                for record, score in zip(fresh, scores, strict=True):
                    account_id, customer_id = accounts.get((record["platform"], record["author"]), (None, None))
                    record.update(social_account_id=account_id, customer_id=customer_id, sentiment_score=score,
                                  sentiment_label=sentiment_label(score), sentiment_model=model_name)
                    report.matched += customer_id is not None
                frame = pd.DataFrame.from_records(fresh)
                frame["social_account_id"] = frame["social_account_id"].astype("Int64")
                frame["customer_id"] = frame["customer_id"].astype("Int64")
                bulk.load(session.connection(), table, frame[[
                    "social_account_id", "customer_id", "platform", "posted_at", "text", "url", "reach",
                    "sentiment_score", "sentiment_label", "author", "external_id", "sentiment_model"]])
                report.created += len(fresh)

            for raw in reader.rows():
                report.rows_read += 1
                record, reasons = _record(raw, mapping, now)
                identifier = (raw.values.get(next((c for c, f in mapping.items() if f == "mention_id"), ""), "")
                              or record.get("url") or f"row {raw.number}")
                if not reasons:
                    first = first_rows.setdefault(record["external_id"], raw.number)
                    if first != raw.number:
                        reasons.append(f"the same mention appears earlier in the file (row {first})")
                if reasons:
                    sink.add(raw.number, identifier, "; ".join(reasons))
                    report.invalid += 1
                    continue
                chunk.append((raw.number, record))
                if len(chunk) >= chunk_size:
                    flush()
                    if progress:
                        progress(reader.fraction(), report.rows_read)
            if chunk:
                flush()
            if report.created:
                tag_mentions(session, since_id=before)
        finally:
            sink.close()
        report.errors = sink.kept
        run.message = (f"{report.matched:,} of {report.created:,} new mentions matched to customers by handle"
                       + (f"; sentiment by {model_name}." if model_name else "."))
        finish_run(session, actor, run, report, started)
        if progress:
            progress(1.0, report.rows_read)
    return report
