"""What every importer shares: the import run and its audit row, the report of counts, invalid rows
and duplicates (with the error file), saved column mappings, and lookups in batches.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_core.imports import order_staging
from crm_core.imports.fields import mapping_fields
from crm_core.imports.files import RawRow, TableReader
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import ConflictError, NotFound, ValidationError
from crm_core.platform.paging import Page
from crm_core.platform.permissions import require
from crm_core.platform.spreadsheet import neutralize
from crm_core.platform.transactions import check_version
from db.models import ImportMapping, ImportRun, utcnow

MAX_KEPT_ERRORS = 10_000  # errors kept in the report; the error file has all of them
MAX_KEPT_DUPLICATES = 10_000
LOOKUP_BATCH = 900  # values per IN (...) list


def mapped_values(raw: RawRow, mapping: dict[str, str]) -> dict[str, str]:
    return {target: raw.values.get(column, "") for column, target in mapping.items()}


@dataclass(frozen=True)
class RowError:
    row: int
    identifier: str
    reason: str


@dataclass(frozen=True)
class DuplicateMatch:
    row: int
    identifier: str
    matched: str  # "customer 42" or "row 7 of this file"
    match: str  # external_id, email, phone or name (with the score)
    action: str  # skipped, updated, created


ERROR_COLUMNS = ["row", "identifier", "reason"]


class ErrorSink:
    """Invalid rows: the first MAX_KEPT_ERRORS in memory, all of them in the error file if one is named."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.kept: list[RowError] = []
        self.count = 0
        self._file = None
        self._writer = None
        if path is not None:
            try:
                self._file = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
            except OSError as exc:
                raise ValidationError(f"Cannot write the error file {path}: {exc.strerror or exc}") from None
            self._writer = csv.writer(self._file)
            self._writer.writerow(ERROR_COLUMNS)

    def add(self, row: int, identifier: str, reason: str) -> None:
        self.count += 1
        if len(self.kept) < MAX_KEPT_ERRORS:
            self.kept.append(RowError(row, identifier, reason))
        if self._writer is not None:
            self._writer.writerow([row, neutralize(identifier), neutralize(reason)])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def errors_csv(errors: Iterable[RowError]) -> str:
    """The error file's text (row, identifier, reason), safe to open in a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(ERROR_COLUMNS)
    for error in errors:
        writer.writerow([error.row, neutralize(error.identifier), neutralize(error.reason)])
    return buffer.getvalue()


@dataclass
class ImportReport:
    entity: str
    file_name: str
    file_format: str
    on_duplicate: str | None = None
    rows_read: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    invalid: int = 0
    customers_created: int = 0  # orders import: customers that did not exist yet
    items_created: int = 0  # orders import: order lines
    products_created: int = 0
    currency: str | None = None  # orders import: the shop currency the orders were checked against
    currency_source: str | None = None
    other_currency: dict[str, int] = field(default_factory=dict)  # currency -> orders not imported
    errors: list[RowError] = field(default_factory=list)
    duplicates: list[DuplicateMatch] = field(default_factory=list)
    seconds: float = 0.0
    run_id: int | None = None

    def counts(self) -> dict[str, int]:
        counts = {"rows_read": self.rows_read, "created": self.created, "updated": self.updated,
                  "skipped": self.skipped, "invalid": self.invalid}
        if self.entity == "orders":
            counts.update(customers_created=self.customers_created, items_created=self.items_created,
                          products_created=self.products_created,
                          other_currency=sum(self.other_currency.values()))
        return counts

    @property
    def wrote_rows(self) -> bool:
        """Whether the import added or changed anything (a re-import that only skipped did not)."""
        return bool(self.created or self.updated or self.customers_created)

    def apply(self, loaded: order_staging.LoadResult) -> None:
        """Take the counts of the set-based load of staged orders."""
        self.created = loaded.orders
        self.skipped = loaded.skipped
        self.customers_created = loaded.customers_created
        self.items_created = loaded.items
        self.products_created = loaded.products_created
        self.currency, self.currency_source = loaded.currency, loaded.currency_source
        self.other_currency = dict(loaded.other_currency or {})

    def figures(self) -> list[tuple[str, int]]:
        """(label, value) of the summary, in the order a person reads them."""
        if self.entity == "orders":
            figures = [("rows read", self.rows_read), ("orders imported", self.created)]
            if self.items_created or self.products_created:
                figures += [("line items", self.items_created), ("products created", self.products_created)]
            figures += [("customers created", self.customers_created),
                        ("skipped (already imported)", self.skipped), ("invalid", self.invalid)]
            return figures
        return [("rows read", self.rows_read), ("imported (new)", self.created), ("updated", self.updated),
                ("skipped as duplicates", self.skipped), ("invalid", self.invalid)]

    def notes(self) -> list[str]:
        """Sentences that explain the figures (the shop currency and what was left out for it)."""
        if self.entity != "orders" or not self.currency:
            return []
        notes = [f"Shop currency {self.currency} ({self.currency_source})."]
        for currency, orders in sorted(self.other_currency.items()):
            notes.append(f"{orders:,} order{'s' if orders != 1 else ''} in {currency} not imported: revenue adds "
                         f"order totals without converting currencies (listed as invalid).")
        return notes

    def summary_lines(self) -> list[str]:
        return [f"{label:<28}{value:>12,}" for label, value in self.figures()]


# --------------------------------------------------------------------------- runs and mappings


def start_run(session: Session, actor: Actor, entity: str, reader: TableReader, on_duplicate: str | None) -> ImportRun:
    """The import run row of an import that starts (every importer records one)."""
    run = ImportRun(entity=entity, file_name=Path(reader.name or "upload").name[:255], file_format=reader.format,
                    on_duplicate=on_duplicate, status="completed", actor_id=actor.id,
                    actor_username=actor.username, started_at=utcnow())
    session.add(run)
    session.flush()
    return run


def finish_run(session: Session, actor: Actor, run: ImportRun, report: ImportReport, started: float) -> None:
    """Store the report's counts and notes on the run and write the import's audit row.

    A file with a header and no row is refused: nothing in it, so most likely not the file meant.
    """
    if report.rows_read == 0:
        raise ValidationError(f"{report.file_name} has a header but no rows: there is nothing to import.")
    for name, value in report.counts().items():
        if hasattr(run, name):
            setattr(run, name, value)
    run.finished_at = utcnow()
    report.seconds = time.perf_counter() - started
    report.run_id = run.id
    if report.entity == "orders":
        run.message = " ".join([*report.notes(), f"{report.customers_created:,} customers created."])
    record_audit(session, actor, f"{report.entity}.import", "import_run", run.id,
                 after={"file": run.file_name, "format": run.file_format, "on_duplicate": run.on_duplicate,
                        **report.counts()})
    session.flush()


def record_failed_run(session: Session, actor: Actor, entity: str, file_name: str, file_format: str,
                      on_duplicate: str | None, message: str) -> ImportRun:
    """Log an import that failed and was rolled back (call in a fresh unit of work); `actor` must be
    allowed to import."""
    require(actor, "customers.import")
    run = ImportRun(entity=entity, file_name=Path(file_name).name[:255], file_format=file_format[:8],
                    on_duplicate=on_duplicate, status="failed", actor_id=actor.id,
                    actor_username=actor.username, started_at=utcnow(),
                    finished_at=utcnow(), message=message[:2000])
    session.add(run)
    record_audit(session, actor, f"{entity}.import_failed", "import_run", None,
                 after={"file": run.file_name, "reason": run.message})
    session.flush()
    return run


def recent_import_runs(session: Session, viewer: Actor, page: int = 1, page_size: int = 20) -> Page:
    require(viewer, "customers.import")
    total = session.scalar(select(func.count()).select_from(ImportRun)) or 0
    page = max(1, page)
    runs = session.scalars(
        select(ImportRun).order_by(ImportRun.started_at.desc(), ImportRun.id.desc())
        .limit(page_size).offset((page - 1) * page_size)
    ).all()
    rows = [{"started_at": r.started_at, "entity": r.entity, "file": r.file_name, "format": r.file_format,
             "by": r.actor_username, "status": r.status, "rows_read": r.rows_read, "created": r.created,
             "updated": r.updated, "skipped": r.skipped, "invalid": r.invalid, "message": r.message} for r in runs]
    return Page(rows=rows, total=total, page=page, page_size=page_size)


def list_mappings(session: Session, viewer: Actor, entity: str = "customers") -> list[dict[str, Any]]:
    """Shared mappings and the viewer's own, by name."""
    require(viewer, "customers.import")
    mine = ImportMapping.owner_id == viewer.id
    rows = session.scalars(
        select(ImportMapping).where(ImportMapping.entity == entity, ImportMapping.is_shared | mine)
        .order_by(ImportMapping.name)
    ).all()
    return [{"id": m.id, "name": m.name, "mapping": dict(m.mapping), "shared": m.is_shared,
             "owner_id": m.owner_id, "version": m.version} for m in rows]


def save_mapping(session: Session, actor: Actor, name: str, mapping: dict[str, str], shared: bool = False,
                 entity: str = "customers", expected_version: int | None = None) -> ImportMapping:
    """Create a named mapping, or replace the one of that name the actor owns (or a shared one)."""
    require(actor, "customers.import")
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("A saved mapping needs a name.")
    name = name.strip()
    if len(name) > 120:
        raise ValidationError("A mapping name is at most 120 characters.")
    fields = mapping_fields(entity)
    if not isinstance(mapping, dict) or not mapping:
        raise ValidationError("Map at least one column before saving the mapping.")
    clean = {}
    for column, target in mapping.items():
        if target in (None, "", "(ignore)"):
            continue
        if target not in fields:
            raise ValidationError(f"{target!r} is not a field you can map to.")
        clean[str(column)] = target
    if not clean:
        raise ValidationError("Map at least one column before saving the mapping.")
    existing = session.scalar(select(ImportMapping).where(ImportMapping.entity == entity, ImportMapping.name == name))
    if existing is None:
        saved = ImportMapping(entity=entity, name=name, mapping=clean, is_shared=bool(shared),
                              owner_id=actor.id)
        session.add(saved)
        session.flush()
        record_audit(session, actor, "import_mapping.create", "import_mapping", saved.id,
                     after={"name": name, "mapping": clean, "shared": bool(shared)})
        return saved
    if not existing.is_shared and existing.owner_id != actor.id:
        raise ConflictError(f"Someone else keeps a private mapping named {name!r}; choose another name.")
    check_version(existing, expected_version, f"The mapping {name!r}")
    before = {"mapping": dict(existing.mapping), "shared": existing.is_shared}
    existing.mapping = clean
    existing.is_shared = bool(shared)
    session.flush()
    record_audit(session, actor, "import_mapping.update", "import_mapping", existing.id,
                 before=before, after={"mapping": clean, "shared": bool(shared)})
    return existing


def delete_mapping(session: Session, actor: Actor, mapping_id: int, expected_version: int | None = None) -> None:
    require(actor, "customers.import")
    saved = session.get(ImportMapping, mapping_id) if isinstance(mapping_id, int) else None
    if saved is None:
        raise NotFound(f"No saved mapping with id {mapping_id}.")
    if not saved.is_shared and saved.owner_id != actor.id:
        raise NotFound(f"No saved mapping with id {mapping_id}.")
    check_version(saved, expected_version, f"The mapping {saved.name!r}")
    record_audit(session, actor, "import_mapping.delete", "import_mapping", saved.id,
                 before={"name": saved.name, "mapping": dict(saved.mapping)})
    session.delete(saved)
    session.flush()


def batches(values: list, size: int = LOOKUP_BATCH) -> Iterator[list]:
    """`values` in slices small enough for one IN (...) list."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


@dataclass
class PreviewRow:
    row: int
    values: dict[str, str]
    status: str  # "ok", "invalid", or "skipped" (already imported)
    reason: str
