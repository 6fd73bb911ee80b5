"""Domain errors: each message says what is wrong in words a person can act on."""

import logging
import secrets


class DomainError(Exception):
    """Base class for errors the UI shows with `st.error` and the CLI prints."""


class ValidationError(DomainError):
    """Input that cannot be accepted as given."""


class PermissionDenied(DomainError):
    """The acting user's role does not allow the action."""


class NotFound(DomainError):
    """The thing asked for does not exist."""


class ConflictError(DomainError):
    """Someone else changed the record since it was read; reload and try again."""


class AuthenticationError(DomainError):
    """Sign-in refused: wrong credentials, a locked or deactivated account."""


# Unexpected errors go to this logger with their traceback; people see only the id.
ERROR_LOG = logging.getLogger("crm.errors")


def report_unexpected(exc: BaseException, where: str) -> str:
    """Log an unexpected error (a bug, not bad input) with its traceback under a short id that a
    person can quote, and return the id. Nothing of the error itself is shown to anyone."""
    error_id = secrets.token_hex(4)
    ERROR_LOG.error("error id %s in %s", error_id, where, exc_info=exc)
    return error_id


def unexpected_error_message(error_id: str) -> str:
    """What a person is told about an unexpected error: no internals, an id to quote."""
    return (f"Something went wrong on our side and nothing was saved (error id {error_id}). "
            "Try again; if it keeps happening, give the error id to an administrator.")


class ServiceUnavailable(DomainError):
    """The database (or another service the work needs) cannot be reached; nothing was saved."""
