"""The unit of work and the version check every mutating service uses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from crm_core.platform.errors import ConflictError, ServiceUnavailable
from db.engine import session_factory


def check_version(entity, expected_version: int | None, label: str) -> None:
    """Refuse an edit made against an older read of the record."""
    if expected_version is not None and entity.version != expected_version:
        raise ConflictError(
            f"{label} was changed by someone else while you were editing "
            f"(version {expected_version} is now {entity.version}). Reload and apply your change again."
        )


@contextmanager
def unit_of_work(bind: Engine | Callable[[], Session]) -> Iterator[Session]:
    """The one unit of work of pages, the `crm` command and the batch: a session on `bind` (an engine
    or a session factory) that commits on success and rolls back on error, with a version conflict
    turned into a ConflictError and a lost connection into ServiceUnavailable (a DomainError), so callers
    show one line."""
    session: Session = session_factory(bind)() if isinstance(bind, Engine) else bind()
    try:
        yield session
        session.commit()
    except StaleDataError as exc:
        session.rollback()
        raise ConflictError(
            "This record was changed by someone else at the same time. Reload and try again."
        ) from exc
    except OperationalError as exc:
        session.rollback()
        raise ServiceUnavailable(
            "The database could not be reached, so nothing was saved. Try again in a moment."
        ) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
