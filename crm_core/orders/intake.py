"""Order intake: record a new order for a customer as it is placed (the API's
`POST /customers/{id}/orders`, a phone or store sale).

Everything is checked before anything is written: the customer may order, the input is valid, the
risk decisions in force allow the order (a block refuses every order, a restriction those over its
limit, with the reason and expiry), a voucher may be redeemed on it and a referral code may be
attributed (first orders only). Then the order, its lines, the voucher's redemption, the referral
and the audit row (which the `order.created` webhook reads) are written in one transaction.

Historical orders come in through `crm_core.imports` (`crm import orders`): they record the past,
so today's risk decisions do not apply to them.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.ids import is_record_id, readable_code
from crm_core.platform.permissions import require
from crm_core.platform.shop import SHOP_CURRENCY
from crm_core.referrals.program import attribute_order
from crm_core.risk.decisions import check_order
from crm_core.vouchers.codes import shown_code
from crm_core.vouchers.service import check_voucher, redeem_voucher
from db.models import ORDER_CHANNELS, Customer, Order, OrderItem, Product, Voucher, utcnow

# A new order is placed (awaiting payment) or paid; later statuses come from the shop's fulfilment.
INTAKE_STATUSES = ("placed", "paid")
ORDER_FIELDS = ("items", "total", "shipping", "channel", "currency", "status", "order_number", "voucher_code",
                "referral_code")
MAX_LINES = 200
MAX_QUANTITY = 10_000
MAX_AMOUNT = Decimal("1000000")
ORDER_NUMBER_PREFIX = "CRM-"
ORDER_NUMBER_LENGTH = 64
CENT = Decimal("0.01")


def _amount(value: Any, label: str, *, positive: bool = False) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValidationError(f"{label} must be an amount such as 19.99.")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValidationError(f"{label} {value!r} is not an amount; write it like 19.99.") from None
    if not amount.is_finite() or amount < 0 or amount > MAX_AMOUNT or (positive and amount == 0):
        low = "above 0" if positive else "from 0"
        raise ValidationError(f"{label} must be {low} up to {MAX_AMOUNT:,.0f}.")
    if amount != amount.quantize(CENT):
        raise ValidationError(f"{label} {value} has more than two decimals.")
    return amount.quantize(CENT)


def _choice(value: Any, label: str, choices: tuple[str, ...], default: str) -> str:
    if value is None or value == "":
        return default
    if value not in choices:
        raise ValidationError(f"{label} must be one of {', '.join(choices)} (got {value!r}).")
    return str(value)


def _currency(value: Any) -> str:
    if value is None or value == "":
        return SHOP_CURRENCY
    text = str(value).strip().upper()
    if len(text) != 3 or not text.isascii() or not text.isalpha():
        raise ValidationError(f"The currency {value!r} is not a three-letter ISO 4217 code such as EUR.")
    return text


def _lines(session: Session, items: Any) -> list[dict[str, Any]]:
    """Each item as {product_id, quantity, unit_price, line_total}; the product's price when none is given."""
    if not isinstance(items, list) or not items:
        raise ValidationError("The items are a list of {product_id, quantity, unit_price} with at least one item.")
    if len(items) > MAX_LINES:
        raise ValidationError(f"An order has at most {MAX_LINES} items.")
    lines = []
    for position, item in enumerate(items, 1):
        where = f"Item {position}"
        if not isinstance(item, dict):
            raise ValidationError(f"{where} must be an object with product_id, quantity and unit_price.")
        unknown = set(item) - {"product_id", "quantity", "unit_price"}
        if unknown:
            raise ValidationError(f"{where} has unknown field(s) {', '.join(sorted(unknown))}; "
                                  "an item has product_id, quantity and unit_price.")
        product_id = item.get("product_id")
        if not is_record_id(product_id):
            raise ValidationError(f"{where}: give the product_id of a product (a whole number).")
        product = session.get(Product, product_id)
        if product is None:
            raise ValidationError(f"{where}: there is no product {product_id}.")
        if not product.is_active:
            raise ValidationError(f"{where}: product {product.sku} is no longer sold.")
        quantity = item.get("quantity", 1)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
            raise ValidationError(f"{where}: the quantity must be a whole number from 1 to {MAX_QUANTITY:,}.")
        price = product.unit_price if item.get("unit_price") is None else _amount(
            item["unit_price"], f"{where}: the unit price")
        lines.append({"product_id": product.id, "quantity": quantity, "unit_price": price,
                      "line_total": (price * quantity).quantize(CENT)})
    return lines


def _order_number(session: Session, given: Any) -> str:
    if given is None or given == "":
        while True:  # 32**12 numbers: a clash is astronomically rare, but never written twice
            number = ORDER_NUMBER_PREFIX + readable_code(12)
            if session.scalar(select(Order.id).where(Order.order_number == number)) is None:
                return number
    if not isinstance(given, str) or not given.strip() or len(given.strip()) > ORDER_NUMBER_LENGTH:
        raise ValidationError(f"The order number is text of 1 to {ORDER_NUMBER_LENGTH} characters.")
    number = given.strip()
    if session.scalar(select(Order.id).where(Order.order_number == number)) is not None:
        raise ValidationError(f"Order {number} is already recorded; an order is recorded once.")
    return number


def _orderable(session: Session, customer_id: int) -> Customer:
    customer = session.get(Customer, customer_id) if is_record_id(customer_id) else None
    if customer is None:
        raise NotFound(f"Customer {customer_id} does not exist.")
    if customer.status != "active":  # merged, erased, closed or suspended
        raise ValidationError(f"Customer {customer_id} is {customer.status}; only an active customer can order.")
    return customer


def record_order(session: Session, actor: Actor, customer_id: int, order: dict[str, Any]) -> dict[str, Any]:
    """Record a new order for the customer; returns it as `order_detail` shows it.

    `order` has either `items` (product_id, quantity and, optionally, unit_price each) or a `total`,
    and optionally `shipping`, `channel`, `currency`, `status` (placed or paid), the shop's
    `order_number`, a `voucher_code` (the customer's own, taken off the goods) and a
    `referral_code` (first orders only). Refused with the reason, nothing
    written, when anything is wrong or a risk decision forbids the order."""
    require(actor, "customers.edit")
    if not isinstance(order, dict):
        raise ValidationError("The order is an object with its items or total.")
    unknown = set(order) - set(ORDER_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown order field(s): {', '.join(sorted(unknown))}. "
                              f"An order has: {', '.join(ORDER_FIELDS)}.")
    customer = _orderable(session, customer_id)
    items, total = order.get("items"), order.get("total")
    if (items is None) == (total is None):
        raise ValidationError("Give the order's items (product, quantity, unit price) or its total, not both.")
    lines = _lines(session, items) if items is not None else []
    subtotal = sum((line["line_total"] for line in lines), Decimal(0)) if lines else _amount(
        total, "The order total", positive=True)
    shipping = _amount(order.get("shipping") or 0, "The shipping")
    value = subtotal + shipping
    if value > MAX_AMOUNT:
        raise ValidationError(f"An order comes to at most {MAX_AMOUNT:,.0f}; this one is {value:,.2f}.")
    channel = _choice(order.get("channel"), "The channel", ORDER_CHANNELS, "web")
    status = _choice(order.get("status"), "The status of a new order", INTAKE_STATUSES, "paid")
    currency = _currency(order.get("currency"))
    number = _order_number(session, order.get("order_number"))
    now = utcnow()
    # The risk decisions in force come first: a block or a restriction's limit refuses the order
    # (its value before any voucher) with the reason and expiry before anything is written.
    check_order(session, customer.id, value, now)
    voucher, discount = None, Decimal(0)
    if order.get("voucher_code") not in (None, ""):
        voucher, discount = check_voucher(session, order["voucher_code"], customer.id, subtotal, currency, now)
    referral = None
    if order.get("referral_code") not in (None, ""):
        if not isinstance(order["referral_code"], str):
            raise ValidationError("The referral code is text.")
        referral = attribute_order(session, actor, customer.id, order["referral_code"], now)
    placed = Order(order_number=number, customer_id=customer.id, ordered_at=now, status=status, channel=channel,
                   currency=currency, subtotal=subtotal, discount=discount, shipping=shipping,
                   total=value - discount, item_count=sum(line["quantity"] for line in lines) if lines else 1)
    session.add(placed)
    session.flush()
    session.add_all(OrderItem(order_id=placed.id, **line) for line in lines)
    session.flush()
    if voucher is not None:
        redeem_voucher(session, actor, voucher, placed.id, now)
    record_audit(session, actor, "order.create", "order", placed.id, after={
        "customer_id": customer.id, "order_number": number, "status": status, "channel": channel,
        "currency": currency, "subtotal": subtotal, "discount": placed.discount, "shipping": shipping,
        "total": placed.total, "voucher_id": voucher.id if voucher else None,
        "referral_id": referral.id if referral else None})
    return order_detail(session, placed)


def order_detail(session: Session, order: Order) -> dict[str, Any]:
    voucher = session.scalar(select(Voucher.code).where(Voucher.redeemed_order_id == order.id))
    items = session.execute(select(OrderItem.product_id, Product.sku, Product.name, OrderItem.quantity,
                                   OrderItem.unit_price, OrderItem.line_total)
                            .outerjoin(Product, Product.id == OrderItem.product_id)
                            .where(OrderItem.order_id == order.id).order_by(OrderItem.id)).all()
    return {"id": order.id, "order_number": order.order_number, "customer_id": order.customer_id,
            "ordered_at": order.ordered_at, "status": order.status, "channel": order.channel,
            "currency": order.currency, "subtotal": order.subtotal, "discount": order.discount,
            "shipping": order.shipping, "total": order.total, "item_count": order.item_count,
            "voucher": None if voucher is None else shown_code(voucher, full=False),
            "items": [{"product_id": r.product_id, "sku": r.sku, "name": r.name, "quantity": r.quantity,
                       "unit_price": r.unit_price, "line_total": r.line_total} for r in items]}
