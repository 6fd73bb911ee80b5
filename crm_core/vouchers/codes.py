"""How a voucher code is shown: whole to the roles that record orders, its last characters to the rest.

Kept apart from the service so that whatever shows a message carrying a code (a campaign's e-mail)
can mask it without importing the voucher service and all it depends on."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor
from crm_core.platform.permissions import allowed
from db.models import Voucher

SHOWN_CODE_END = 4  # roles that cannot record orders see only the code's last characters


def shown_code(code: str, full: bool) -> str:
    return code if full else "•" * (len(code) - SHOWN_CODE_END) + code[-SHOWN_CODE_END:]


def full_codes_for(viewer: Actor) -> bool:
    """Whether `viewer` sees whole voucher codes: the roles that record orders (customers.edit) do;
    the others see the last characters only, wherever a code is shown."""
    return allowed(viewer.role, "customers.edit")


def mask_codes_in(session: Session, viewer: Actor, customer_id: int, texts: list[str | None]) -> list[str | None]:
    """`texts` (the messages sent to one customer) with that customer's voucher codes shortened as on
    their vouchers, for a viewer who may not see whole codes; unchanged for one who may."""
    if full_codes_for(viewer) or not any(texts):
        return texts
    codes = session.scalars(select(Voucher.code).where(Voucher.customer_id == customer_id)).all()
    masked = []
    for text in texts:
        for code in codes:
            if text and code in text:
                text = text.replace(code, shown_code(code, False))
        masked.append(text)
    return masked
