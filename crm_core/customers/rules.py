"""The rules of a customer record that every domain, model and page shares.

A merged or erased customer is gone: not counted in any figure, segment, score or model, not
shown in lists, never a duplicate or import target (though its external id stays taken), and not
editable. Text fields have the lengths the schema gives them.
"""

from __future__ import annotations

from crm_core.platform.actors import Actor
from crm_core.platform.permissions import allowed
from db.models import Customer

GONE_STATUSES: tuple[str, ...] = ("merged", "erased")
# Customers who can no longer be given anything (loyalty points, rewards): gone or closed.
UNREWARDABLE_STATUSES: tuple[str, ...] = (*GONE_STATUSES, "closed")
# The customers that count: everyone who is not gone (an SQL condition on customers).
COUNTED_CUSTOMER = Customer.status.not_in(GONE_STATUSES)

# field -> the most characters it may hold, for edits and imports alike
TEXT_LIMITS: dict[str, int] = {
    "external_id": 100, "first_name": 100, "last_name": 100, "email": 254, "company": 200, "city": 100,
    "notes": 5000, "line1": 200, "line2": 200, "region": 100,
}


def is_gone(status: str | None) -> bool:
    return status in GONE_STATUSES


def display_name(first_name: str | None, last_name: str | None, customer_id: int | None = None,
                 external_id: str | None = None) -> str:
    """How lists name a customer: their name, or, for one imported from an order log with none,
    their id in the shop's system ("Customer 00042") or ours ("Customer #7")."""
    name = f"{first_name or ''} {last_name or ''}".strip()
    if name:
        return name
    if external_id:
        return f"Customer {external_id}"
    return f"Customer #{customer_id}" if customer_id is not None else "(no name)"


# Names and e-mails are personal data: lists show them only to roles allowed to view customers;
# anyone else (an executive reading figures) sees a customer by number.
PERSONAL_DATA_PERMISSION = "customers.view"


def sees_people(viewer: Actor | None) -> bool:
    """Whether `viewer` may see who customers are (names, e-mails), not only figures about them."""
    return viewer is not None and allowed(viewer.role, PERSONAL_DATA_PERMISSION)


def shown_name(viewer: Actor | None, first_name: str | None, last_name: str | None, customer_id: int | None,
               external_id: str | None = None) -> str:
    """`display_name` for a viewer who may see people; "Customer #id" for anyone else."""
    if sees_people(viewer):
        return display_name(first_name, last_name, customer_id, external_id)
    return f"Customer #{customer_id}" if customer_id is not None else "(a customer)"


def shown_email(viewer: Actor | None, email: str | None) -> str | None:
    """The e-mail for a viewer who may see people; nothing for anyone else."""
    return email if sees_people(viewer) else None
