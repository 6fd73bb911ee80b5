"""Customers' social accounts (platform, handle, followers, verified) and matching mentions to them.

A handle is kept normalised (no leading @, lower case), so "@Anna_K" on a mention and "anna_k" on
an account match. Linking an account matches the mentions already imported from that handle;
unlinking leaves them unmatched.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crm_core.customers.rules import is_gone
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import ConflictError, NotFound, ValidationError
from crm_core.platform.permissions import require
from crm_core.platform.sql import rows_affected
from db.models import SOCIAL_PLATFORMS, Customer, SocialAccount, SocialMention, utcnow

HANDLE = re.compile(r"[a-z0-9._\-]{1,100}")
MAX_FOLLOWERS = 2_000_000_000
# Names other tools use for a platform -> ours (lower case, spaces and hyphens removed).
PLATFORM_VALUES = {**{p: p for p in SOCIAL_PLATFORMS}, "x": "twitter", "twitterx": "twitter", "xtwitter": "twitter",
                   "ig": "instagram", "insta": "instagram", "fb": "facebook", "meta": "facebook", "yt": "youtube",
                   "tt": "tiktok", "li": "linkedin"}


def normalize_platform(value: Any) -> str:
    text = re.sub(r"[\s\-_/]+", "", str(value or "")).lower()
    found = PLATFORM_VALUES.get(text)
    if found is None:
        raise ValidationError(f"Platform {value!r} is not one of {', '.join(SOCIAL_PLATFORMS)}.")
    return found


def normalize_handle(value: Any) -> str:
    """The handle without @, profile URL or case: '@Anna_K', 'https://x.com/anna_k/' -> 'anna_k'."""
    text = str(value or "").strip()
    if "/" in text:
        text = next((part for part in reversed(text.split("?")[0].split("#")[0].split("/")) if part), "")
    text = text.lstrip("@").strip().lower()
    if not text:
        raise ValidationError("A handle is required.")
    if not HANDLE.fullmatch(text):
        raise ValidationError(f"Handle {value!r} may hold only letters, digits, '.', '_' and '-' "
                              "(at most 100 characters).")
    return text


def _customer(session: Session, customer_id: Any) -> Customer:
    if isinstance(customer_id, bool) or not isinstance(customer_id, int):
        raise ValidationError("Choose a customer by their numeric id.")
    customer = session.get(Customer, customer_id)
    if customer is None or is_gone(customer.status):
        raise NotFound(f"Customer {customer_id} does not exist (or was merged or erased).")
    return customer


def _followers(value: Any) -> int:
    if value in (None, ""):
        return 0
    try:
        number = int(str(value).replace(",", "").strip())
    except ValueError:
        raise ValidationError(f"Followers must be a whole number, not {value!r}.") from None
    if not 0 <= number <= MAX_FOLLOWERS:
        raise ValidationError(f"Followers must be between 0 and {MAX_FOLLOWERS:,}.")
    return number


def link_account(session: Session, actor: Actor, customer_id: Any, platform: Any, handle: Any,
                 followers: Any = 0, verified: bool = False, profile_url: str | None = None) -> dict[str, Any]:
    """Add a social account to a customer and match the mentions already imported from it."""
    require(actor, "customers.edit")
    customer = _customer(session, customer_id)
    platform = normalize_platform(platform)
    handle = normalize_handle(handle)
    count = _followers(followers)
    if profile_url is not None and len(profile_url) > 500:
        raise ValidationError("The profile URL is at most 500 characters.")
    existing = session.scalar(select(SocialAccount).where(SocialAccount.platform == platform,
                                                          SocialAccount.handle == handle))
    if existing is not None:
        owner = "this customer" if existing.customer_id == customer.id else f"customer {existing.customer_id}"
        raise ConflictError(f"@{handle} on {platform} is already linked to {owner}.")
    account = SocialAccount(customer_id=customer.id, platform=platform, handle=handle, followers=count,
                            is_verified=bool(verified), profile_url=profile_url or None, connected_at=utcnow())
    session.add(account)
    session.flush()
    matched = rows_affected(session.execute(
        update(SocialMention).where(SocialMention.platform == platform, SocialMention.author == handle,
                                    SocialMention.social_account_id.is_(None))
        .values(social_account_id=account.id, customer_id=customer.id)))
    record_audit(session, actor, "social_account.link", "customer", customer.id,
                 after={"platform": platform, "handle": handle, "followers": count, "verified": bool(verified),
                        "mentions_matched": matched})
    return {"account_id": account.id, "platform": platform, "handle": handle, "mentions_matched": matched}


def unlink_account(session: Session, actor: Actor, account_id: Any) -> dict[str, Any]:
    """Remove an account; its mentions stay, unmatched."""
    require(actor, "customers.edit")
    account = session.get(SocialAccount, account_id) if isinstance(account_id, int) else None
    if account is None:
        raise NotFound(f"No social account with id {account_id}.")
    session.execute(update(SocialMention).where(SocialMention.social_account_id == account.id)
                    .values(social_account_id=None, customer_id=None))
    record_audit(session, actor, "social_account.unlink", "customer", account.customer_id,
                 before={"platform": account.platform, "handle": account.handle})
    session.delete(account)
    session.flush()
    return {"platform": account.platform, "handle": account.handle}


def customer_accounts(session: Session, viewer: Actor, customer_id: Any) -> list[dict[str, Any]]:
    """A customer's social accounts (merged and erased customers' too: their profile still shows)."""
    require(viewer, "customers.view")
    if isinstance(customer_id, bool) or not isinstance(customer_id, int):
        raise ValidationError("Choose a customer by their numeric id.")
    found = session.scalars(select(SocialAccount).where(SocialAccount.customer_id == customer_id)
                            .order_by(SocialAccount.platform, SocialAccount.handle)).all()
    return [{"id": a.id, "platform": a.platform, "handle": a.handle, "followers": a.followers,
             "verified": a.is_verified, "profile_url": a.profile_url, "connected_at": a.connected_at} for a in found]
