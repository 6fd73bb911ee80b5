"""Customer 360: key facts and scores, one timeline, orders and vouchers (issued and voided by hand for
roles that manage vouchers), addresses, payment methods, consents, segments and score history, with an
edit form that detects concurrent edits."""

import datetime as dt
import uuid

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from crm_core import customers, platform, social, vouchers
from db.models import ADDRESS_KINDS, GENDERS, VOUCHER_KINDS
from ui import context
from ui.charts import shared, time_axis
from ui.cta_panel import customer_panel
from ui.data_date import data_date
from ui.format import plain


@shared
def monthly_revenue_chart(monthly: list[dict]):
    return time_axis(px.bar(pd.DataFrame(monthly), x="month", y="revenue", hover_data=["orders"],
                            title="Revenue per month", labels={"month": "", "revenue": "Revenue (€)"}),
                     [m["month"] for m in monthly])


@shared
def score_history_chart(churn_history: list[dict] | None, health_history: list[dict] | None):
    figure = go.Figure()
    if churn_history:
        churn = pd.DataFrame(churn_history)
        figure.add_scatter(x=churn["as_of"], y=churn["probability"] * 100, name="Churn probability (%)")
    if health_history:
        health = pd.DataFrame(health_history)
        figure.add_scatter(x=health["as_of"], y=health["score"], name="Health score")
    figure.update_layout(title="Scores over time", yaxis_title="0-100")
    dates = [row["as_of"] for row in churn_history or []] + [row["as_of"] for row in health_history or []]
    return time_axis(figure, dates)


@shared
def current_scores_chart(shown: dict, as_of):
    return px.bar(x=list(shown), y=[v * 100 for v in shown.values()], labels={"x": "", "y": "%"},
                  title=f"Current scores (as of {as_of})")


# --------------------------------------------------------------------------- vouchers by hand

VOUCHER_KIND_LABELS = {"percent": "Percentage off", "amount": "Amount off (€)"}
VOUCHER_DONE_KEY = "c360_voucher_done"  # the last issue or void, shown once in the section
ISSUE_DEFAULTS = {"c360_voucher_kind": VOUCHER_KINDS[0], "c360_voucher_value": 10.0,
                  "c360_voucher_days": vouchers.DEFAULT_VOUCHER_DAYS, "c360_voucher_min_order": 0.0,
                  "c360_voucher_reason": ""}
# One token per fresh issue form, in the submit button's key and consumed by a successful issue: a click
# that a browser still holding the filled-in form sends again reaches no button, so it issues nothing.
ISSUE_TOKEN_KEY = "c360_voucher_issue_token"
ISSUE_SUBMIT_PREFIX = "c360_voucher_issue_submit_"
# The void form the same way: a fresh token empties its reason before it is drawn, and a successful void
# consumes it, so the form clears in the browser too and a resent click voids nothing.
VOID_TOKEN_KEY = "c360_void_token"
VOID_SUBMIT_PREFIX = "c360_void_submit_"
VOID_REASON_KEY = "c360_void_reason"


def fresh_form_submit_key(token_key: str, prefix: str, defaults: dict) -> str:
    """The submit button's key of a form that starts afresh after each success (the caller deletes
    `token_key` then): a new token writes the `defaults` to the widgets' keys before they are drawn,
    which (unlike dropping the keys) also clears the form in the browser, and a click a browser sends
    again for the old form reaches no button."""
    if token_key not in st.session_state:
        st.session_state[token_key] = uuid.uuid4().hex
        st.session_state.update(defaults)
    for key, default in defaults.items():  # widgets not drawn on another page forget their values
        st.session_state.setdefault(key, default)
    return prefix + st.session_state[token_key]


def issue_voucher_form(customer_id: int) -> None:
    """Issue a voucher by hand; what was typed stays after a refusal, and the new code is shown once made.
    After an issue the form starts afresh."""
    submit_key = fresh_form_submit_key(ISSUE_TOKEN_KEY, ISSUE_SUBMIT_PREFIX, ISSUE_DEFAULTS)
    with st.form("c360_voucher_issue"):
        st.markdown("**Issue a voucher**")
        c1, c2 = st.columns(2)
        kind = c1.selectbox("Kind", VOUCHER_KINDS, format_func=VOUCHER_KIND_LABELS.get, key="c360_voucher_kind")
        value = c2.number_input("Value (% or €)", min_value=0.0, step=1.0, format="%.2f",
                                key="c360_voucher_value",
                                help=f"A percentage up to {vouchers.MAX_VOUCHER_PERCENT}% or an amount up to "
                                     f"€{vouchers.MAX_VOUCHER_AMOUNT:,.0f}, off the order's goods.")
        days = c1.number_input("Valid for (days)", min_value=1, max_value=vouchers.MAX_VOUCHER_DAYS, step=1,
                               key="c360_voucher_days")
        min_order = c2.number_input("Minimum order (€)", min_value=0.0, step=5.0, format="%.2f",
                                    key="c360_voucher_min_order")
        reason = st.text_input("Reason (required)", key="c360_voucher_reason",
                               placeholder="e.g. Goodwill for the late parcel")
        submitted = st.form_submit_button("Issue voucher", type="primary", key=submit_key)
    if submitted:
        made = context.act(vouchers.issue_voucher, customer_id, kind, value, days=int(days), min_order=min_order,
                           reason=reason)
        if made is not None:
            off = voucher_off(made.kind, made.value)
            minimum = f" on orders from €{made.min_order:,.2f}" if made.min_order else ""
            st.session_state[VOUCHER_DONE_KEY] = {
                "code": made.code,
                "message": f"Voucher {made.code} issued: {off}{minimum}, valid until {made.expires_at:%Y-%m-%d}. "
                           "Give the customer this code."}
            del st.session_state[ISSUE_TOKEN_KEY]  # used: the next run draws a fresh form with a new one
            st.session_state.pop(f"c360_void_seen_{customer_id}", None)
            st.rerun()


def voucher_off(kind: str, value) -> str:
    return f"{value:,.2f}% off" if kind == "percent" else f"€{value:,.2f} off"


def voucher_label(row: dict) -> str:
    off = voucher_off(row["kind"], row["value"])
    until = f", until {row['expires_at']:%Y-%m-%d}" if row["expires_at"] else ""
    return f"{row['code']} · {off}{until} · {row['source']}"


def void_voucher_form(customer_id: int, rows: list[dict]) -> None:
    """Void an unused voucher with a reason, against the version shown: the list is kept as first shown
    (as the edit form keeps its version), so a voucher used or voided since is refused, not clawed back."""
    seen_key = f"c360_void_seen_{customer_id}"
    current = {row["id"]: {"version": row["version"], "code": row["code"], "label": voucher_label(row)}
               for row in rows if row["status"] == "issued"}
    if not st.session_state.get(seen_key):  # nothing was shown that could have gone stale
        st.session_state[seen_key] = current
    seen = st.session_state[seen_key]
    if not seen:
        return
    if seen != current:
        st.warning("This customer's vouchers changed since you opened them. Voiding one that changed will be "
                   "refused; reload first.")
        if st.button("Reload the vouchers", icon=":material/refresh:", key=f"c360_void_reload_{customer_id}"):
            st.session_state[seen_key] = current
            st.rerun()
    submit_key = fresh_form_submit_key(VOID_TOKEN_KEY, VOID_SUBMIT_PREFIX, {VOID_REASON_KEY: ""})
    with st.form(f"c360_voucher_void_{customer_id}"):
        st.markdown("**Void a voucher**")
        voucher_id = st.selectbox("Unused voucher", list(seen), format_func=lambda i: seen[i]["label"],
                                  key=f"c360_void_id_{customer_id}")
        reason = st.text_input("Reason (required)", key=VOID_REASON_KEY, placeholder="e.g. Issued by mistake")
        submitted = st.form_submit_button("Void voucher", key=submit_key)
    if submitted and voucher_id is not None and context.act(
            vouchers.void_voucher, voucher_id, reason, expected_version=seen[voucher_id]["version"]) is not None:
        st.session_state[VOUCHER_DONE_KEY] = {"message": f"Voucher {seen[voucher_id]['code']} voided.", "code": None}
        st.session_state.pop(seen_key, None)
        del st.session_state[VOID_TOKEN_KEY]  # used: the next run draws an empty form with a new one
        st.rerun()


viewer = context.require_page("customers.view")
can_edit = platform.allowed(viewer.role, "customers.edit")
can_manage_vouchers = platform.allowed(viewer.role, "vouchers.manage")
st.title("Customer 360")
if flash := st.session_state.pop("c360_flash", None):
    st.success(flash)


def money(value) -> str:
    return "–" if value is None else f"€{value:,.2f}"


def share(value) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


# --------------------------------------------------------------------------- pick a customer

from_url = None
if st.query_params.get("id"):
    try:
        from_url = platform.parse_record_id(st.query_params["id"], "The customer id in the address")
    except platform.ValidationError as exc:
        st.error(str(exc))
        del st.query_params["id"]
if from_url and st.session_state.get("c360_from_url") != from_url:
    st.session_state["c360_from_url"] = from_url
    st.session_state["c360_id"] = from_url

pick_col, find_col = st.columns([1, 2])
picked = pick_col.number_input("Customer id", min_value=1, max_value=platform.MAX_RECORD_ID, step=1, value=None,
                               key="c360_id",
                               placeholder="e.g. 42")
lookup = find_col.text_input("Or find a customer", key="c360_lookup", placeholder="Name, email or phone")
if lookup.strip():
    found = context.read(customers.search_customers, customers.CustomerQuery(text=lookup), page=1, page_size=10)
    if found is not None and found.rows:
        labels = {r["id"]: f"#{r['id']} {r['name']} <{r['email'] or 'no email'}> {r['country'] or ''}"
                  for r in found.rows}
        picked = st.selectbox("Matches", list(labels), format_func=labels.get, key="c360_match")
    elif found is not None:
        st.info("Nobody matches that text.")

if not picked:
    st.info("Enter a customer id, search by name, or open a profile from the Customers page.")
    st.stop()
customer_id = int(picked)
if st.query_params.get("id") != str(customer_id):
    st.query_params["id"] = str(customer_id)

data = context.read(customers.customer_profile, customer_id)
if data is None:
    st.stop()
facts, scores = data["facts"], data["scores"]

# --------------------------------------------------------------------------- key facts and scores

st.subheader(f"{plain(facts['name'] or '(no name)')} · #{facts['id']}")
details = [facts["email"] or "no email", facts["phone"] or "no phone", facts["company"],
           ", ".join(x for x in (facts["city"], facts["country_code"]) if x),
           f"signed up {facts['signed_up_at']:%Y-%m-%d}", f"status {facts['status']}"]
st.caption(" · ".join(plain(d) for d in details if d))  # e-mail, company, city: typed by people
accounts = context.read(social.customer_accounts, customer_id) or []
if accounts:
    st.caption("Social: " + " · ".join(f"{plain(a['platform'])} @{plain(a['handle'])} ({a['followers']:,} followers"
                                       f"{', verified' if a['verified'] else ''})" for a in accounts))
if facts["status"] == "merged":
    st.warning(f"This record was merged into customer {facts['merged_into_id']}.")

row1 = st.columns(4)
row1[0].metric("Orders", f"{facts['orders']:,}", border=True)
row1[1].metric("Revenue", money(facts["revenue"]), border=True)
row1[2].metric("CLV (12 months)", money(scores["clv_12m"]), border=True)
row1[3].metric("Churn probability", share(scores["churn_probability"]), border=True,
               help=f"Risk level: {scores['risk_level'] or 'not scored'}")
row2 = st.columns(4)
row2[0].metric("Lifecycle stage", (facts["stage"] or "–").replace("_", " "), border=True,
               help=facts["stage_reason"] or None)
row2[1].metric("Health", "–" if scores["health_score"] is None else f"{scores['health_score']:.0f}",
               border=True, help=scores["health_level"])
row2[2].metric("Loyalty tier", facts["tier"] or "–", border=True,
               help=None if facts["points"] is None else f"{facts['points']:,} points")
row2[3].metric("Days since last order", "–" if facts["days_since_last_order"] is None
               else f"{facts['days_since_last_order']:,}", border=True)

# --------------------------------------------------------------------------- edit form

version_key = f"c360_version_{customer_id}"
if version_key not in st.session_state:
    st.session_state[version_key] = facts["version"]
editing_version = st.session_state[version_key]

if can_edit and not customers.is_gone(facts["status"]):
    with st.expander("Edit customer", expanded=False):
        if editing_version != facts["version"]:
            st.warning(f"Someone else changed this customer since you opened it (version {editing_version} → "
                       f"{facts['version']}). Saving now would be refused; reload first.")
        with st.form(f"edit_customer_{customer_id}_{editing_version}"):
            c1, c2 = st.columns(2)
            first = c1.text_input("First name", value=facts["first_name"])
            last = c2.text_input("Last name", value=facts["last_name"])
            email = c1.text_input("Email", value=facts["email"] or "")
            phone = c2.text_input("Phone", value=facts["phone"] or "",
                                  help="Without +prefix it is read as a number of the customer's country.")
            company = c1.text_input("Company", value=facts["company"] or "")
            country = c2.text_input("Country code", value=facts["country_code"] or "", max_chars=2)
            city = c1.text_input("City", value=facts["city"] or "")
            language = c2.text_input("Preferred language", value=facts["preferred_language"] or "")
            genders = ["", *GENDERS]
            gender = c1.selectbox("Gender", genders, index=genders.index(facts["gender"] or ""))
            birth = c2.date_input("Date of birth", value=facts["date_of_birth"], min_value=dt.date(1900, 1, 1),
                                  max_value=dt.date.today())
            notes = st.text_area("Notes", value=facts["notes"] or "")
            saved = st.form_submit_button("Save changes", type="primary")
        if saved:
            entered = {"first_name": first, "last_name": last, "email": email or None, "phone": phone or None,
                       "company": company or None, "country_code": country or None, "city": city or None,
                       "preferred_language": language or None, "gender": gender or None, "date_of_birth": birth,
                       "notes": notes or None}
            changes = {k: v for k, v in entered.items() if (v or None) != (facts[k] or None)}
            if not changes:
                st.info("Nothing to save: no field changed.")
            else:
                updated = context.act(customers.update_customer, customer_id, editing_version, changes)
                if updated is not None:
                    st.session_state[version_key] = updated.version
                    st.session_state["c360_flash"] = f"Saved {', '.join(sorted(changes))}."
                    st.rerun()
        if editing_version != facts["version"] and st.button("Reload the latest version", icon=":material/refresh:"):
            st.session_state[version_key] = facts["version"]
            st.rerun()

# --------------------------------------------------------------------------- tabs

tab_names = ["Timeline", "Orders", "Addresses", "Payment methods", "Preferences & consents", "Segments", "Scores"]
if platform.allowed(viewer.role, "success.view"):
    tab_names.append("Calls to action")
tabs = st.tabs(tab_names, key="c360_tab")

with tabs[0]:
    kinds = st.multiselect("Show", customers.TIMELINE_KINDS, key="c360_kinds",
                           format_func=lambda k: k.replace("_", " "), placeholder="Every kind of event")
    timeline_key = f"c360_timeline_page_{customer_id}"
    page_number = st.session_state.get(timeline_key, 1)
    feed = context.read(customers.timeline, customer_id, page=page_number, page_size=25, kinds=kinds or None)
    if feed is not None and feed.total:
        st.caption(f"{feed.total:,} events, newest first")
        st.dataframe(pd.DataFrame(feed.rows)[["at", "kind", "event", "detail"]], hide_index=True, width="stretch",
                     column_config={"at": st.column_config.DatetimeColumn("When", format="YYYY-MM-DD HH:mm")})
        st.pagination(feed.pages, default=min(page_number, feed.pages), key=timeline_key)
    elif feed is not None:
        st.info("No events for this customer yet.")

with tabs[1]:
    monthly = context.read(customers.monthly_orders, customer_id) or []
    if monthly:
        st.plotly_chart(monthly_revenue_chart(monthly), width="stretch")
    orders_key = f"c360_orders_page_{customer_id}"
    page_number = st.session_state.get(orders_key, 1)
    placed = context.read(customers.orders, customer_id, page=page_number, page_size=25)
    if placed is not None and placed.total:
        st.caption(f"{placed.total:,} orders")
        st.dataframe(pd.DataFrame(placed.rows), hide_index=True, width="stretch",
                     column_config={"total": st.column_config.NumberColumn("Total", format="%.2f"),
                                    "ordered_at": st.column_config.DatetimeColumn("Ordered", format="YYYY-MM-DD")})
        st.pagination(placed.pages, default=min(page_number, placed.pages), key=orders_key)
    elif placed is not None:
        st.info("No orders yet.")
    held = context.read(vouchers.customer_vouchers, customer_id, page_size=50)
    manage_vouchers = can_manage_vouchers and not customers.is_gone(facts["status"])
    if held is not None and (held.total or manage_vouchers):
        st.markdown("**Vouchers**")
    if done := st.session_state.pop(VOUCHER_DONE_KEY, None):
        st.success(done["message"])
        if done["code"]:
            st.code(done["code"], language=None)  # to copy for the customer
    if held is not None and held.total:
        st.caption(f"{held.total:,} vouchers, newest first{' (the latest 50)' if held.total > 50 else ''}. "
                   "Whole codes for roles that record orders; others see the last four characters.")
        shown = pd.DataFrame(held.rows)[["code", "kind", "value", "min_order", "source", "status", "issued_at",
                                         "expires_at", "redeemed_order_number", "void_reason"]]
        shown["kind"] = shown["kind"].map(VOUCHER_KIND_LABELS).fillna(shown["kind"])
        shown[["redeemed_order_number", "void_reason"]] = shown[["redeemed_order_number", "void_reason"]].fillna("")
        st.dataframe(shown, hide_index=True, width="stretch",
                     column_config={"code": "Code", "kind": "Kind", "source": "Source", "status": "Status",
                                    "value": st.column_config.NumberColumn("Value (€ or %)", format="%.2f"),
                                    "min_order": st.column_config.NumberColumn("Minimum order", format="%.2f"),
                                    "issued_at": st.column_config.DatetimeColumn("Issued", format="YYYY-MM-DD"),
                                    "expires_at": st.column_config.DatetimeColumn("Expires", format="YYYY-MM-DD"),
                                    "redeemed_order_number": "Used on order",
                                    "void_reason": "Void or reversal reason"})
    if held is not None and manage_vouchers:
        issue_voucher_form(customer_id)
        void_voucher_form(customer_id, held.rows)

with tabs[2]:
    places = context.read(customers.addresses, customer_id) or []
    if places:
        st.dataframe(pd.DataFrame(places).drop(columns=["id"]), hide_index=True, width="stretch")
    else:
        st.info("No addresses on file.")
    if can_edit and not customers.is_gone(facts["status"]):
        with st.form("add_address", clear_on_submit=True):
            st.markdown("**Add an address**")
            a1, a2 = st.columns(2)
            kind = a1.selectbox("Kind", ADDRESS_KINDS, index=ADDRESS_KINDS.index("shipping"))
            address_country = a2.text_input("Country code", value=facts["country_code"] or "", max_chars=2)
            line1 = a1.text_input("Street and number")
            line2 = a2.text_input("Address line 2")
            postal = a1.text_input("Postal code")
            address_city = a2.text_input("City")
            region = a1.text_input("Region")
            default = a2.checkbox("Default address of this kind")
            if st.form_submit_button("Add address"):
                added = context.act(customers.add_address, customer_id, {
                    "kind": kind, "line1": line1, "line2": line2 or None, "postal_code": postal,
                    "city": address_city, "region": region or None, "country_code": address_country,
                    "is_default": default,
                })
                if added is not None:
                    where = (f"at {added.latitude:.2f}, {added.longitude:.2f}" if added.latitude is not None
                             else "without coordinates (city not in the offline gazetteer)")
                    st.session_state["c360_flash"] = f"Address added and validated, placed {where}."
                    st.rerun()

with tabs[3]:
    cards = context.read(customers.payment_methods, customer_id) or []
    if cards:
        expired = [c for c in cards if c["expired"]]
        if any(c["is_default"] and c["expired"] for c in cards):
            st.warning("The default payment method has expired.")
        st.caption(f"{len(cards)} payment methods, {len(expired)} expired. Only processor tokens are stored.")
        st.dataframe(pd.DataFrame(cards).drop(columns=["id"]), hide_index=True, width="stretch",
                     column_config={"expired": st.column_config.CheckboxColumn("Expired")})
    else:
        st.info("No payment methods on file.")

with tabs[4]:
    prefs = context.read(customers.preferences, customer_id)
    if prefs is not None:
        if prefs["preferences"]:
            p = prefs["preferences"]
            st.dataframe(pd.DataFrame([{
                "email": p["email_opt_in"], "sms": p["sms_opt_in"], "push": p["push_opt_in"],
                "phone": p["phone_opt_in"], "frequency": p["contact_frequency"],
                "preferred channel": p["preferred_channel"], "language": p["preferred_language"],
                "interests": ", ".join(map(str, p["interests"])),
            }]), hide_index=True, width="stretch")
        else:
            st.info("No preference centre entry yet.")
        st.markdown("**Consents (latest entry per purpose)**")
        st.dataframe(pd.DataFrame(prefs["consents"]), hide_index=True, width="stretch",
                     column_config={"granted": st.column_config.CheckboxColumn("Granted")})

with tabs[5]:
    memberships = context.read(customers.segments_of, customer_id) or []
    if memberships:
        st.dataframe(pd.DataFrame(memberships), hide_index=True, width="stretch")
    else:
        st.info("Not in any segment.")

with tabs[6]:
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Risk level", scores["risk_level"] or "–")
    c2.metric("Probability alive", share(scores["prob_alive"]))
    c3.metric("RFM", scores["rfm"] or "–", help=scores["rfm_segment"])
    c4.metric("Engagement score", "–" if scores["engagement_score"] is None else f"{scores['engagement_score']:.0f}")
    history = context.read(customers.score_history, customer_id)
    if history and (history["churn"] or history["health"]):
        st.plotly_chart(score_history_chart(history["churn"], history["health"]), width="stretch")
    else:
        snapshot = {"Churn probability": scores["churn_probability"], "Probability alive": scores["prob_alive"]}
        shown = {k: v for k, v in snapshot.items() if v is not None}
        if shown:
            st.plotly_chart(current_scores_chart(shown, scores["as_of"]), width="stretch")
        st.caption("No score history yet: it grows with each scoring run.")

if len(tabs) > 7:
    with tabs[7]:
        customer_panel(customer_id, data_date().day, "customer_360")
