"""Risk reviews: the review queue with each case's signals and decisions, score levels and quality,
the rule editor with replay, allow/block lists and identity verification."""

import datetime as dt
import json

import pandas as pd
import plotly.express as px
import streamlit as st

from crm_core import platform, risk
from db.models import IDENTITY_STATUSES, RISK_ACTIONS, RISK_LIST_FIELDS, RISK_REVIEW_STATES, RISK_SCORE_TYPES
from ui import context
from ui.charts import shared
from ui.data_date import show_data_date
from ui.format import plain


@shared
def levels_chart(levels: pd.DataFrame):
    return px.bar(levels, x="type", y="customers", color="level", barmode="group", log_y=True,
                  category_orders={"level": list(risk.LEVEL_FLOORS)},
                  title="Customers per risk level (log scale)", labels={"type": "", "level": "Level"})


@shared
def rule_precision_chart(frame: pd.DataFrame):
    return px.bar(frame, x="precision", y="rule", orientation="h", hover_data=["reviewed", "confirmed"],
                  range_x=[0, 1], labels={"precision": "Share of reviews confirmed", "rule": ""})


@shared
def identity_chart(counts: dict):
    return px.bar(pd.DataFrame({"status": list(counts), "customers": list(counts.values())}),
                  x="status", y="customers", title="Identity verification", labels={"status": ""})


viewer = context.require_page("risk.view")
can_review = platform.allowed(viewer.role, "risk.review")
can_rules = platform.allowed(viewer.role, "risk.rules")
can_lists = platform.allowed(viewer.role, "risk.lists")
can_identity = platform.allowed(viewer.role, "risk.identity")
st.title("Risk reviews")
as_of = show_data_date().day
if flash := st.session_state.pop("risk_flash", None):
    st.success(flash)
TYPE_LABELS = {"fraud": "Fraud", "credit": "Credit", "account_takeover": "Account takeover", "overall": "Overall"}


@st.cache_data(ttl=60, refresh_mode="background", max_entries=4, show_spinner=False)
def distribution(url: str) -> dict:
    with context.session() as s:
        return risk.score_distribution(s, viewer)


def saved(message: str) -> None:
    distribution.clear()
    st.session_state["risk_flash"] = message
    st.rerun()


summary = context.read(risk.queue_summary)
scores = distribution(str(context.engine().url))
if summary is None:
    st.stop()
c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("Open reviews", f"{summary['open']:,}", border=True)
c2.metric("Overdue", f"{summary['overdue']:,}", help=f"Open longer than the {risk.REVIEW_SLA_HOURS} h response SLA.",
          border=True)
c3.metric("Confirmed", f"{summary['confirmed']:,}", border=True,
          help="Reviews that confirmed the risk: the customer was restricted or blocked.")
c4.metric("Approved", f"{summary['approved']:,}", border=True)
c5.metric("High or critical risk", f"{scores['to_review']:,}", border=True,
          help="Customers with an overall score of 50 or more at the latest risk refresh.")
if scores["as_of"] is None:
    st.info("No risk scores yet: the batch refresh scores every customer (Refresh runs page, or `crm refresh`).")
else:
    st.caption(f"Scores as of {scores['as_of']:%d %b %Y}. A score is the sum of the weights of the rules that fire "
               f"plus up to {risk.ANOMALY_POINTS:.0f} points from the anomaly model, capped at 100; "
               f"from {risk.REVIEW_THRESHOLD:.0f} a review opens.")

tabs = st.tabs(["Queue", "Case", "Scores and quality", "Rules and replay", "Lists", "Identity"],
               key="risk_tab")

with tabs[0]:
    f1, f2, f3 = st.columns(3)
    status = f1.selectbox("Status", RISK_REVIEW_STATES, key="risk_status")
    kind = f2.selectbox("Risk type", ["All", *RISK_SCORE_TYPES], format_func=lambda k: TYPE_LABELS.get(k, k),
                        key="risk_type")
    overdue = f3.toggle("Overdue only", key="risk_overdue")
    page_number = st.session_state.get("risk_page", 1)
    queue = context.read(risk.review_queue, status=status, risk_type=None if kind == "All" else kind,
                         overdue_only=overdue, page=page_number, page_size=25)
    if queue is not None and queue.total:
        st.caption(f"{queue.total:,} reviews, highest score first, then oldest. Open one in the Case tab by its number.")
        frame = pd.DataFrame(queue.rows).drop(columns=["version"])
        st.dataframe(frame, hide_index=True, width="stretch", column_config={
            "review": "Review", "customer_id": "Customer id", "risk_type": "Type",
            "score": st.column_config.ProgressColumn("Score", min_value=0, max_value=100, format="%.0f"),
            "signals": "Rules that fired", "age_hours": st.column_config.NumberColumn("Age (h)", format="%.1f"),
            "due_at": st.column_config.DatetimeColumn("Due", format="YYYY-MM-DD HH:mm"),
            "overdue": st.column_config.CheckboxColumn("Overdue")})
        st.pagination(queue.pages, default=min(page_number, queue.pages), key="risk_page")
    elif queue is not None:
        st.info("No reviews match these filters." if status != "open" or kind != "All" or overdue
                else "The queue is empty: no customer is waiting for a review.")

with tabs[1]:
    # Only the case shown first: the case itself is read live below.
    first = context.cached(risk.review_queue, page_size=1)
    default = first.rows[0]["review"] if first is not None and first.rows else 0
    review_id = st.number_input("Review number", min_value=0, step=1, value=int(default), key="risk_case",
                                help="The number in the Queue tab; the highest-scoring open review is shown first.")
    case = context.read(risk.review_detail, int(review_id)) if review_id else None
    if not review_id:
        st.info("No open reviews. Enter a review number to look at a decided one.")
    if case is not None:
        r, c = case["review"], case["customer"]
        st.markdown(f"**Review {r['id']}** · {TYPE_LABELS[r['risk_type']]} · score **{r['score']:.0f}** · "
                    f"**{r['status']}** · opened {r['opened_at']:%Y-%m-%d %H:%M}, due {r['due_at']:%Y-%m-%d %H:%M}")
        st.text(f"Customer {c['id']}: {c['name']} · {c['email'] or 'no e-mail'} · {c['country'] or '–'} · "
                f"signed up {c['signed_up_at']:%Y-%m-%d} · identity {case['identity']['status']}")
        if r["reason"]:
            st.text(f"Decision reason: {r['reason']}")
        left, right = st.columns(2)
        with left:
            st.markdown("**Rules that fired**")
            if case["fired"]:
                st.dataframe(pd.DataFrame(case["fired"]), hide_index=True, width="stretch")
            else:
                st.caption("No rule: the score (anomaly model) opened this review.")
            if r["anomaly"] is not None:
                st.caption(f"Anomaly rank {r['anomaly']:.2f} (1 = the most unusual customer).")
        with right:
            st.markdown("**Signals when the review opened**")
            st.dataframe(pd.DataFrame(case["signals"]), hide_index=True, width="stretch")
            if case["left_out"]:
                st.caption("Not available: " + "; ".join(sorted(set(case["left_out"].values()))))
        for column, (title, key) in zip(st.columns(3), (("Recent orders", "orders"), ("Recent sign-ins", "sign_ins"),
                                                        ("Chargebacks", "chargebacks")), strict=True):
            column.markdown(f"**{title}**")
            if case[key]:
                column.dataframe(pd.DataFrame(case[key]), hide_index=True, width="stretch")
            else:
                column.caption("None recorded.")
        if case["decisions"]:
            st.markdown("**Decisions in force**")
            st.dataframe(pd.DataFrame(case["decisions"]), hide_index=True, width="stretch")
        if can_review and r["status"] == "open":
            with st.form("risk_decide"):
                st.markdown("**Decide**")
                outcome = st.radio("Outcome", list(risk.REVIEW_OUTCOMES), horizontal=True, key="risk_outcome",
                                   help="Approve clears the case; restrict refuses redemptions, e-mail changes and "
                                        "orders over the limit; block closes every account action.")
                reason = st.text_area("Reason", max_chars=500, key="risk_reason")
                d1, d2 = st.columns(2)
                days = d1.number_input("Lasts (days)", min_value=1, max_value=3650, value=risk.DECISION_DAYS, key="risk_days")
                limit = d2.number_input("Order limit when restricted", min_value=0.0, value=float(risk.RESTRICTED_ORDER_LIMIT),
                                        step=50.0, key="risk_limit")
                if st.form_submit_button("Save decision", type="primary", key="risk_decide_submit") and context.act(
                        risk.decide_review, r["id"], outcome, reason, days=int(days), order_limit=limit,
                        expected_version=r["version"]) is not None:
                    saved(f"Review {r['id']}: {risk.REVIEW_OUTCOMES[outcome]}.")

with tabs[2]:
    if scores["as_of"] is None:
        st.info("No risk scores yet.")
    else:
        levels = pd.DataFrame(scores["levels"])
        levels["type"] = levels["type"].map(TYPE_LABELS)
        st.plotly_chart(levels_chart(levels), width="stretch")
    quality = context.cached(risk.truth_quality)
    if quality:
        st.markdown("**Against the simulator's planted cases** (fraud rings, account takeovers, bad payers), "
                    f"flagged = score of {risk.REVIEW_THRESHOLD:.0f} or more")
        frame = pd.DataFrame(quality)
        frame["type"] = frame["type"].map(TYPE_LABELS)
        st.dataframe(frame, hide_index=True, width="stretch", column_config={
            "precision": st.column_config.NumberColumn("Precision", format="%.2f"),
            "recall": st.column_config.NumberColumn("Recall", format="%.2f")})
    precision = context.cached(risk.rule_precision)
    st.markdown("**Precision of each rule and of the model against reviewed outcomes**")
    if precision:
        frame = pd.DataFrame(precision)
        st.plotly_chart(rule_precision_chart(frame), width="stretch")
    else:
        st.caption("No decided reviews yet: precision appears once reviewers approve, restrict or block.")

with tabs[3]:
    rules = context.read(risk.list_rules) or []
    if rules:
        st.dataframe(pd.DataFrame(rules)[["id", "name", "risk_type", "weight", "action", "is_active", "description"]],
                     hide_index=True, width="stretch", column_config={"description": "Condition"})
    else:
        st.info("No rules yet: the first risk refresh installs the default rules.")
    left_out = context.cached(risk.signals_left_out, as_of) or {}
    with st.expander("Signals a rule can use"):
        st.dataframe(pd.DataFrame(risk.signal_catalogue(left_out)), hide_index=True, width="stretch")
    names = {rule["id"]: rule for rule in rules}
    choice = st.selectbox("Edit", [0, *names], format_func=lambda i: "New rule" if i == 0 else names[i]["name"],
                          key="risk_rule_pick", disabled=not can_rules)
    current = names.get(choice)
    base = current["condition"] if current else {"all": [{"signal": "orders_7d", "op": ">=", "value": 3}]}
    with st.form("risk_rule"):
        name = st.text_input("Name", value=current["name"] if current else "", max_chars=120)
        r1, r2, r3, r4 = st.columns(4)
        rtype = r1.selectbox("Risk type", RISK_SCORE_TYPES, format_func=TYPE_LABELS.get,
                             index=RISK_SCORE_TYPES.index(current["risk_type"]) if current else 0)
        weight = r2.number_input("Weight (0-100)", min_value=0, max_value=100, step=5,
                                 value=int(current["weight"]) if current else 20)
        action = r3.selectbox("Action", RISK_ACTIONS, index=RISK_ACTIONS.index(current["action"]) if current else 0)
        active = r4.toggle("Active", value=current["is_active"] if current else True)
        text = st.text_area("Condition (JSON: all/any groups of signal, op, value)", value=json.dumps(base, indent=1),
                            height=140)
        days = st.number_input("Replay over the last N days", min_value=1, max_value=365, value=30)
        replay_clicked = st.form_submit_button("Replay")
        save_clicked = st.form_submit_button("Save rule", type="primary", disabled=not can_rules)
    try:
        condition = json.loads(text)
    except json.JSONDecodeError as exc:
        condition = None
        if replay_clicked or save_clicked:
            st.error(f"The condition is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.")
    if replay_clicked and condition is not None:
        with st.spinner("Replaying the rule over the history ..."):
            replay = context.read(risk.replay_rule, condition, int(days), as_of)
        if replay is not None:
            st.markdown(f"**Replay of `{replay['description']}`** from {replay['from']:%d %b %Y} to {replay['to']:%d %b %Y}")
            m1, m2, m3, m4 = st.columns(4)
            m1.metric("Customers flagged", f"{replay['customers_flagged']:,}",
                      help=f"of {replay['customers_scored']:,} ({replay['share_flagged']:.1%})")
            m2.metric("Their orders since", f"{replay['orders_flagged']:,}")
            m3.metric("Later chargeback / refund / confirmed",
                      f"{replay['later_chargeback']:,} / {replay['later_refund']:,} / {replay['later_confirmed']:,}")
            hit = replay["later_any"] / replay["customers_flagged"] if replay["customers_flagged"] else None
            m4.metric("Flagged with a bad outcome", "–" if hit is None else f"{hit:.0%}",
                      help="Base rate over all customers: "
                           + ("–" if replay["base_rate_any"] is None else f"{replay['base_rate_any']:.1%}"))
            if replay["left_out"]:
                st.warning("This shop has no data for: " + "; ".join(f"{k} ({v})" for k, v in replay["left_out"].items())
                           + ". The rule cannot fire on it.")
    if save_clicked and condition is not None:
        rule = context.act(risk.save_rule, name=name, risk_type=rtype, condition=condition, weight=int(weight),
                           action=action, is_active=active, rule_id=current["id"] if current else None,
                           expected_version=current["version"] if current else None)
        if rule is not None:
            saved(f"Rule '{plain(name)}' saved; the next risk refresh scores with it.")
    if current and can_rules and st.button(f"Delete rule '{plain(current['name'])}'", key="risk_rule_delete") and \
            context.act(risk.delete_rule, current["id"]) is not None:
        saved(f"Rule {current['name']!r} deleted.")

with tabs[4]:
    list_kind = st.segmented_control("List", ["block", "allow"], default="block", key="risk_list_kind") or "block"
    page_number = st.session_state.get("risk_list_page", 1)
    entries = context.read(risk.list_entries, list_kind, page=page_number, page_size=25)
    if entries is not None and entries.total:
        st.dataframe(pd.DataFrame(entries.rows), hide_index=True, width="stretch")
        st.pagination(entries.pages, default=min(page_number, entries.pages), key="risk_list_page")
    elif entries is not None:
        st.info(f"The {list_kind} list is empty.")
    st.caption("Allow-list matches are never reviewed or blocked; block-list matches are blocked at the next refresh. "
               "Order of actions: " + ", ".join(risk.ACTION_ORDER) + ".")
    if can_lists:
        with st.form("risk_list_add"):
            a, b, c = st.columns([1, 1, 2])
            kind_in = a.selectbox("List", ["block", "allow"])
            field = b.selectbox("Field", RISK_LIST_FIELDS, format_func=risk.FIELD_LABELS.get)
            value = c.text_input("Value", max_chars=254)
            why = st.text_input("Reason", max_chars=255)
            expires = st.date_input("Expires (optional)", value=None, min_value=dt.date.today() + dt.timedelta(days=1))
            if st.form_submit_button("Add to list", type="primary") and context.act(
                    risk.add_entry, list_kind=kind_in, field=field, value=value, reason=why,
                    expires_at=platform.midnight(expires) if expires else None) is not None:
                saved(f"Added to the {kind_in} list.")
        with st.form("risk_list_remove"):
            entry_id = st.number_input("Entry id to remove", min_value=1, step=1)
            if st.form_submit_button("Remove") and context.act(risk.remove_entry, int(entry_id)) is not None:
                saved(f"List entry {int(entry_id)} removed.")

with tabs[5]:
    counts = context.cached(risk.identity_counts)
    if counts:
        st.plotly_chart(identity_chart(counts), width="stretch")
    customer_id = st.number_input("Customer id", min_value=0, step=1, key="risk_identity_customer")
    if customer_id:
        status_now = context.read(risk.customer_identity, int(customer_id))
        if status_now is not None:
            st.text(f"Customer {int(customer_id)}: {status_now['status']}"
                    + (f" ({status_now['reason']})" if status_now["reason"] else ""))
            if can_identity:
                with st.form("risk_identity"):
                    moves = risk.TRANSITIONS[status_now["status"]]
                    target = st.selectbox("Move to", moves)
                    note = st.text_input("Reason (required for failed)", max_chars=255)
                    if st.form_submit_button("Save status", type="primary") and context.act(
                            risk.set_identity_status, int(customer_id), target, note) is not None:
                        saved(f"Customer {int(customer_id)} is now {target}.")
    if can_identity:
        with st.form("risk_identity_import"):
            upload = st.file_uploader("Import a provider's results (CSV, Excel or JSON: customer_id, status, reason)",
                                      type=["csv", "xlsx", "json"])
            if st.form_submit_button("Import"):
                if upload is None:
                    st.error("Choose a file to import.")
                else:
                    done = context.act(risk.import_identity_file, upload, upload.name)
                    if done is not None:
                        saved(f"{done['imported']:,} identity results imported ({done['verified']:,} verified, "
                              f"{done['failed']:,} failed, {done['pending']:,} pending).")
    if not customer_id:
        st.caption("Enter a customer id to see and change their verification status "
                   f"({' → '.join(IDENTITY_STATUSES[:2])} → verified / failed).")
