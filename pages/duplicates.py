"""Duplicates & merge: scan, review queue, side-by-side merge with preview, history with undo, split."""

import pandas as pd
import plotly.express as px
import streamlit as st

from crm_core import customers
from ui import context
from ui.charts import shared
from ui.format import plain


@shared
def score_bands_chart(bands: list[dict]):
    return px.bar(pd.DataFrame(bands), x="score_from", y="pairs", title="Open pairs by score",
                  labels={"score_from": "Score from", "pairs": "Pairs"})


viewer = context.require_page("customers.merge")
st.title("Duplicates & merge")
if flash := st.session_state.pop("duplicates_flash", None):
    st.success(flash)

counts = context.read(customers.duplicate_counts) or {"open": 0, "merged": 0, "dismissed": 0}
c1, c2, c3 = st.columns(3)
c1.metric("Open pairs", f"{counts['open']:,}", border=True)
c2.metric("Merged", f"{counts['merged']:,}", border=True)
c3.metric("Dismissed", f"{counts['dismissed']:,}", border=True)

with st.expander("Scan for duplicates", icon=":material/search:"):
    st.caption("Compares customers that share an email local part, a phone number, a postal code or a similar name "
               "in the same country, and queues likely pairs. Dismissed pairs stay dismissed.")
    if st.button("Run the duplicate scan", key="run_scan"):
        bar = st.progress(0.0, text="Starting…")
        result = context.act(customers.scan_duplicates, progress=lambda fraction, text: bar.progress(fraction, text=text))
        if result is not None:
            st.session_state["duplicates_flash"] = (
                f"Scanned {result['customers']:,} customers in {result['seconds']}s: "
                f"{result['likely_duplicates']:,} likely duplicates, {result['new']:,} new."
            )
            st.rerun()

tab_queue, tab_merge, tab_history, tab_split = st.tabs(["Review queue", "Merge", "History", "Split"], key="duplicates_tab")

with tab_queue:
    min_score = st.slider("Minimum score", 0.6, 1.0, 0.6, 0.05, key="queue_min_score")
    page_number = st.session_state.get("queue_page", 1)
    found = context.read(customers.duplicate_queue, status="open", page=page_number, page_size=25, min_score=min_score)
    if found is None or not found.total:
        st.info("No open duplicate pairs. Run the duplicate scan to look for some.")
    else:
        st.caption(f"{found.total:,} open pairs, best first")
        st.dataframe(
            pd.DataFrame(found.rows)[["pair_id", "score", "reasons", "customer_a", "name_a", "email_a",
                                      "customer_b", "name_b", "email_b"]],
            hide_index=True, width="stretch",
            column_config={"score": st.column_config.ProgressColumn("Score", min_value=0, max_value=1, format="%.2f"),
                           "pair_id": "Pair", "reasons": "Why they match"},
        )
        st.pagination(found.pages, default=min(page_number, found.pages), key="queue_page")
        bands = context.read(customers.duplicate_score_histogram) or []
        if bands:
            st.plotly_chart(score_bands_chart(bands), width="stretch")
        by_id = {row["pair_id"]: row for row in found.rows}
        chosen = st.selectbox("Pair", list(by_id), key="queue_pair",
                              format_func=lambda p: f"#{p}: {by_id[p]['name_a']} / {by_id[p]['name_b']} "
                                                    f"({by_id[p]['score']:.2f})")
        left, right = st.columns(2)
        if left.button("Review in the Merge tab", key="review_pair"):
            st.session_state["merge_survivor"] = by_id[chosen]["customer_a"]
            st.session_state["merge_other"] = by_id[chosen]["customer_b"]
            st.session_state["duplicates_flash"] = f"Pair #{chosen} is ready in the Merge tab."
            st.rerun()
        if right.button("Not the same person: dismiss", key="dismiss_pair") and context.act(
                customers.dismiss_duplicate, chosen, expected_version=by_id[chosen]["version"]) is not None:
            st.session_state["duplicates_flash"] = f"Pair #{chosen} dismissed."
            st.rerun()

with tab_merge:
    if st.session_state.pop("merge_done", False):  # the merged pair leaves the form: the next one starts empty
        st.session_state.update(merge_survivor=None, merge_other=None, merge_confirm=False)
    a, b = st.columns(2)
    survivor_id = a.number_input("Survivor (keeps its id)", min_value=1, step=1, value=None, key="merge_survivor")
    other_id = b.number_input("Customer to merge into it", min_value=1, step=1, value=None, key="merge_other")
    preview = None
    if survivor_id is None or other_id is None:
        st.info("Pick a pair in the review queue, or enter the two customer ids.")
    elif survivor_id == other_id:
        st.info("Choose two different customers.")
    else:
        preview = context.read(customers.preview_merge, int(survivor_id), int(other_id))
    if preview:
        st.caption(f"{preview['rows_moving']:,} related rows move to customer {preview['survivor']['id']}; "
                   f"{preview['loyalty_points_moving']:,} loyalty points are combined through the ledger.")
        with st.form("merge_form"):
            st.markdown(f"**{plain(preview['survivor']['name'])}** (#{preview['survivor']['id']}) ← "
                        f"**{plain(preview['other']['name'])}** (#{preview['other']['id']})")
            choices = {}
            for field in preview["fields"]:
                if not field["differs"]:
                    continue
                pick = st.radio(field["field"].replace("_", " ").capitalize(),
                                [f"Survivor: {field['survivor']}", f"Other: {field['other']}"],
                                horizontal=True, key=f"field_{field['field']}")
                choices[field["field"]] = "other" if pick.startswith("Other") else "survivor"
            if not choices:
                st.caption("Both records hold the same values.")
            confirmed = st.checkbox("I checked that these records are the same person", key="merge_confirm")
            if st.form_submit_button("Merge"):
                if not confirmed:
                    st.error("Tick the confirmation first.")
                else:
                    merge_id = context.act(customers.merge_customers, int(survivor_id), int(other_id), field_choices=choices,
                                           survivor_version=preview["survivor"]["version"],
                                           other_version=preview["other"]["version"])
                    if merge_id is not None:
                        st.session_state["duplicates_flash"] = (
                            f"Merged customer {int(other_id)} into {int(survivor_id)} (merge {merge_id})."
                        )
                        st.session_state["merge_done"] = True
                        st.rerun()
        if preview["tables"]:
            st.markdown("**Related records**")
            st.dataframe(pd.DataFrame([{k: t[k] for k in ("table", "column", "action", "rows")} for t in preview["tables"]]),
                         hide_index=True, width="stretch")
            for table in preview["tables"]:
                with st.expander(f"{table['table']}: {table['rows']} row(s) {table['action']}"):
                    st.dataframe(pd.DataFrame(table["sample"]), hide_index=True, width="stretch")
        else:
            st.caption("The other customer has no related records.")

with tab_history:
    page_number = st.session_state.get("history_page", 1)
    merges = context.read(customers.merge_history, page=page_number, page_size=25)
    if merges is None or not merges.total:
        st.info("No merges or splits yet.")
    else:
        st.dataframe(pd.DataFrame(merges.rows), hide_index=True, width="stretch")
        st.pagination(merges.pages, default=min(page_number, merges.pages), key="history_page")
        undoable = [r["merge_id"] for r in merges.rows if r["status"] == "completed" and r["kind"] == "merge"]
        if undoable:
            with st.form("undo_form"):
                merge_id = st.selectbox("Merge to undo", undoable, key="undo_merge_id")
                if st.form_submit_button("Undo merge"):
                    result = context.act(customers.undo_merge, merge_id)
                    if result is not None:
                        st.session_state["duplicates_flash"] = (
                            f"Undid merge {merge_id}: {result['moved_back']} rows moved back."
                        )
                        st.rerun()

with tab_split:
    split_id = st.number_input("Customer to split", min_value=1, step=1, value=None, key="split_customer")
    rows = None if split_id is None else context.read(customers.splittable_rows, int(split_id))
    if split_id is None:
        st.info("Enter the id of a customer record that mixes two people.")
    if rows is not None and not rows:
        st.info("This customer has no related records to split off.")
    if rows:
        with st.form("split_form"):
            st.caption("Choose the records that belong to another person; they move to a new customer.")
            moves = {}
            for table in rows:
                moves[table["table"]] = st.multiselect(f"{table['table']} ({len(table['keys'])})", table["keys"],
                                                       key=f"split_{table['table']}")
            first, last, email = st.columns(3)
            fields = {"first_name": first.text_input("First name", key="split_first"),
                      "last_name": last.text_input("Last name", key="split_last"),
                      "email": email.text_input("Email", key="split_email")}
            if st.form_submit_button("Split into a new customer"):
                new_id = context.act(customers.split_customer, int(split_id), moves, fields)
                if new_id is not None:
                    st.session_state["duplicates_flash"] = (
                        f"Created customer {new_id} with the chosen records. Orders and revenue show at once; "
                        "scores and segments follow at the next refresh.")
                    st.rerun()
