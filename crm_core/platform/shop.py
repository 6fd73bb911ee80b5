"""The shop's own facts that the domains default to: its country, time zone and currency.

The country (an admin setting) gives the forecasts their public holidays; the default business
calendar and the demo shop use the same country and time zone, and an order import without any
currency assumes the shop currency.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor
from crm_core.platform.errors import ValidationError
from crm_core.platform.permissions import require
from crm_core.platform.settings import save_setting, stored_setting

SHOP_COUNTRY = "DE"
SHOP_TIMEZONE = "Europe/Berlin"
SHOP_CURRENCY = "EUR"
COUNTRY_KEY = "shop_country"


def supported_countries() -> dict[str, str]:
    """Country codes with a public-holiday calendar, with their names."""
    import holidays
    import pycountry

    codes = sorted(c for c in holidays.list_supported_countries() if len(c) == 2)
    names = {}
    for code in codes:
        country = pycountry.countries.get(alpha_2=code)
        names[code] = country.name if country else code
    return names


def get_shop_country(session: Session) -> tuple[str, int]:
    """The shop's country (ISO code) for holidays, and the version to send back when saving (0 = default)."""
    value, version = stored_setting(session, COUNTRY_KEY)
    return str((value or {}).get("country", SHOP_COUNTRY)), version


def save_shop_country(session: Session, actor: Actor, country: Any, expected_version: int | None) -> tuple[str, int]:
    """Set the shop's country; refuse an unknown country or an edit made against an older version."""
    require(actor, "models.manage")
    if not isinstance(country, str) or not country.strip():
        raise ValidationError("Choose the shop's country (a two-letter ISO code such as DE).")
    code = country.strip().upper()
    known = supported_countries()
    if code not in known:
        raise ValidationError(f"No public-holiday calendar for the country {country!r}; choose a two-letter ISO code "
                              "such as DE, FR or US.")
    version = save_setting(session, actor, COUNTRY_KEY, {"country": code}, expected_version,
                           what="The shop's country", action="forecast.country.save")
    return code, version
