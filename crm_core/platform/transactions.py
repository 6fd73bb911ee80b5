"""The unit of work and the version check every mutating service uses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from crm_core.platform.errors import ConflictError, ServiceUnavailable
from db import engine as engine_module
from db.engine import SQLITE_IMMEDIATE, session_factory


def version_conflict(label: str, expected_version: int, current_version: int, *, plural: bool = False) -> ConflictError:
    """The refusal of an edit sent against `expected_version`: a version the record never had yet (a
    made-up or mistyped one, above the current) is said to be so, not blamed on someone else's edit."""
    was, has, its = ("were", "have", "their") if plural else ("was", "has", "its")
    if expected_version > current_version:
        return ConflictError(f"{label} {has} no version {expected_version}; {its} current version is "
                             f"{current_version}. Reload it and apply your change again.")
    return ConflictError(f"{label} {was} changed by someone else while you were editing "
                         f"(version {expected_version} is now {current_version}). Reload and apply your change again.")


def check_version(entity, expected_version: int | None, label: str) -> None:
    """Refuse an edit made against an older read of the record, or against a version it never had."""
    if expected_version is not None and entity.version != expected_version:
        raise version_conflict(label, expected_version, entity.version)


BUSY_MESSAGE = ("The database is busy with other changes and nothing was saved after waiting "
                "{seconds:.0f} seconds. Try again in a moment.")
UNREACHABLE_MESSAGE = "The database could not be reached, so nothing was saved. Try again in a moment."


def _is_busy(exc: OperationalError) -> bool:
    text = str(exc.orig or "").lower()
    return "database is locked" in text or "database is busy" in text or "database table is locked" in text


def database_was_busy(exc: BaseException) -> bool:
    """Whether `exc` (as `unit_of_work` raises it, or raw) is SQLite's busy or locked error: worth one
    more try of the whole unit. A transaction that read first and then writes after another connection
    committed fails at once (SQLite cannot move its snapshot forward), whatever the busy timeout."""
    found: BaseException | None = exc
    while found is not None:
        if isinstance(found, OperationalError) and _is_busy(found):
            return True
        found = found.__cause__
    return False


@contextmanager
def unit_of_work(bind: Engine | Callable[[], Session], *, write: bool = False) -> Iterator[Session]:
    """The one unit of work of pages, the `crm` command and the batch: a session on `bind` (an engine
    or a session factory) that commits on success and rolls back on error, with a version conflict
    turned into a ConflictError and a lost connection (or a database busy beyond the timeout) into
    ServiceUnavailable (a DomainError), so callers show one line.

    `write=True` says the work will write: on SQLite its transaction then takes the write lock as it
    begins, waiting (up to the busy timeout) for any other writer, so it never fails half-way."""
    session: Session = session_factory(bind)() if isinstance(bind, Engine) else bind()
    try:
        if write and session.get_bind().dialect.name == "sqlite":
            session.connection(execution_options={SQLITE_IMMEDIATE: True})
        yield session
        session.commit()
    except StaleDataError as exc:
        session.rollback()
        raise ConflictError(
            "This record was changed by someone else at the same time. Reload and try again."
        ) from exc
    except IntegrityError as exc:
        # Two people saving the same unique thing at once (a username, a saved search's name):
        # the second insert loses the race the service's own check could not see.
        session.rollback()
        raise ConflictError(
            "Someone else saved the same thing at the same moment, so nothing was saved. Reload and try again."
        ) from exc
    except OperationalError as exc:
        session.rollback()
        if _is_busy(exc):
            raise ServiceUnavailable(BUSY_MESSAGE.format(seconds=engine_module.SQLITE_BUSY_TIMEOUT_MS / 1000)) from exc
        raise ServiceUnavailable(UNREACHABLE_MESSAGE) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
