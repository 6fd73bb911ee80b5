"""Domain errors: each message says what is wrong in words a person can act on."""


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


class ServiceUnavailable(DomainError):
    """The database (or another service the work needs) cannot be reached; nothing was saved."""
