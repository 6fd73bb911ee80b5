"""Who acts: every service takes an Actor and checks its role before it reads or changes anything.

Four kinds of actor meet this protocol: a staff `db.models.User` row, the `SignedInUser` the pages
keep between reruns, the `TokenActor` of an API request, and `SYSTEM`, the acting user of the batch
and the `crm` command (no id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@runtime_checkable
class Actor(Protocol):
    """What the services read of whoever acts: an id for the audit row (None for the system)."""

    @property
    def id(self) -> int | None: ...

    @property
    def username(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def is_active(self) -> bool: ...


@dataclass(frozen=True)
class SystemActor:
    """The acting user for operator commands (`crm ...`) and the batch refresh."""

    id: None = None
    username: str = "system"
    role: str = "admin"
    is_active: bool = True


SYSTEM = SystemActor()


@dataclass(frozen=True)
class TokenActor:
    """The acting user of an API request: the token's user, with the token's id and read-only flag."""

    id: int
    username: str
    role: str
    is_active: bool
    token_id: int
    read_only: bool

