"""Segments: sizes and revenue share, a rule builder with preview, segment detail, comparison."""

import json

import pandas as pd
import plotly.express as px
import streamlit as st

from crm_core import platform, segmentation
from db.models import SEGMENT_TYPES
from ui import context
from ui.charts import shared
from ui.data_date import show_data_date, show_refresh_as_of
from ui.format import plain, readable, words
from ui.tabs import keep, lazy_tabs

viewer = context.require_page("segments.view")
can_manage = platform.allowed(viewer.role, "segments.manage")
can_see_people = platform.allowed(viewer.role, "customers.view")
can_export = platform.allowed(viewer.role, "customers.export")
st.title("Segments")
as_of = show_data_date().day
if flash := st.session_state.pop("segments_flash", None):
    st.success(flash)




@shared
def share_chart(profile_a: dict, label_a: str, profile_b: dict, label_b: str, dimension: str, title: str):
    frames = []
    for profile, label in ((profile_a, label_a), (profile_b, label_b)):
        frame = pd.DataFrame(profile[dimension])
        if not frame.empty:
            frames.append(frame.assign(group=label))
    if not frames:
        return None
    data = pd.concat(frames)
    if dimension == "lifecycle_stage":
        data["value"] = data["value"].map(lambda v: v if v is None else words(v))
    return px.bar(data, x="value", y="share", color="group", barmode="group", title=title,
                  labels={"value": "", "share": "Share of customers", "group": ""})


@shared
def largest_chart(largest: pd.DataFrame):
    return px.bar(largest, x="members", y="name", orientation="h", color="type", title="Largest active segments",
                  labels={"members": "Members", "name": "", "type": "Type"}).update_layout(yaxis={"categoryorder": "total ascending"})


@shared
def history_chart(history: pd.DataFrame):
    return px.line(history, x="month", y="members", markers=True, title="Members at each month end",
                   labels={"month": "", "members": "Members"})


all_segments = context.cached(segmentation.list_segments) or []
show_refresh_as_of("Member counts and revenue shares")
by_name = {s["name"]: s for s in all_segments}
MEMBER_SORT_LABELS = {"id": "Customer id", "name": "Last name", "email": "E-mail", "country": "Country",
                      "order_count": "Orders", "total_revenue": "Revenue", "days_since_last_order": "Days since last order",
                      "churn_probability": "Churn probability", "entered_at": "Joined the segment"}
MEMBER_COLUMNS = {**MEMBER_SORT_LABELS, "name": "Customer", "lifecycle_stage": "Lifecycle stage",
                  "loyalty_tier": "Loyalty tier"}
SEGMENT_TYPE_LABELS = {t: {"rfm": "RFM", "value_based": "Value-based"}.get(t, words(t)) for t in SEGMENT_TYPES}
AVERAGE_LABELS = {"order_count": "Orders", "total_revenue": "Revenue (€)", "days_since_last_order": "Days since last order"}
# Only the open tab is built and drawn; the widgets of the others keep their values meanwhile.
keep("detail_segment", "members_page", "rules_mode", "rules_match", "compare_a", "compare_b",
     members_sort="total_revenue", members_descending=True, members_page_size=50, rules_json=json.dumps(
         {"all": [{"field": "country", "op": "in", "value": ["DE", "AT"]},
                  {"any": [{"field": "loyalty_tier", "op": "in", "value": ["gold", "platinum", "diamond"]},
                           {"field": "total_revenue", "op": "ge", "value": 1000}]}]}, indent=2))
tab_list, tab_detail, tab_build, tab_compare = lazy_tabs(
    ["All segments", "Segment detail", "Build a segment", "Compare"], key="segments_tab")

if tab_list.open:
    with tab_list:
        if not all_segments:
            st.info("No segments yet. Run the batch refresh (`crm refresh`) for RFM and cluster segments, or build one.")
        else:
            active = [s for s in all_segments if s["active"]]
            c1, c2, c3 = st.columns(3)
            c1.metric("Segments", f"{len(all_segments):,}", border=True)
            c2.metric("Active", f"{len(active):,}", border=True)
            c3.metric("Dynamic", f"{sum(s['kind'] == 'dynamic' for s in all_segments):,}", border=True)
            table = pd.DataFrame(all_segments)
            shown = table[["name", "type", "kind", "members", "revenue_share", "priority", "active", "last_refreshed_at"]].copy()
            shown["type"] = shown["type"].map(SEGMENT_TYPE_LABELS)
            shown["kind"] = shown["kind"].str.capitalize()
            st.dataframe(
                shown,
                hide_index=True, width="stretch",
                column_config={
                    "name": "Segment", "type": "Type", "kind": "Kind", "members": st.column_config.NumberColumn("Members", format="localized"),
                    "revenue_share": st.column_config.ProgressColumn("Revenue share", format="percent", min_value=0, max_value=1),
                    "priority": "Priority", "active": "Active",
                    "last_refreshed_at": st.column_config.DatetimeColumn("Refreshed", format="YYYY-MM-DD HH:mm"),
                },
            )
            largest = shown.loc[table["active"], ["name", "type", "members"]].nlargest(15, "members")
            st.plotly_chart(largest_chart(largest), width="stretch")

if tab_detail.open:
    with tab_detail:
        if not all_segments:
            st.info("No segments to show yet.")
        else:
            name = st.selectbox("Segment", list(by_name), key="detail_segment")
            chosen = by_name[name]
            st.caption(plain(chosen["description"]) if chosen["description"] else f"{chosen['type']} segment")
            c1, c2, c3 = st.columns(3)
            c1.metric("Members", f"{chosen['members']:,}", border=True)
            c2.metric("Revenue share", f"{chosen['revenue_share'] * 100:.1f}%", border=True)
            c3.metric("Kind", chosen["kind"], border=True)
            history = context.cached(segmentation.segment_size_history, chosen["id"], months=12)
            if history:
                st.plotly_chart(history_chart(pd.DataFrame(history)), width="stretch")

            if not can_see_people:
                st.info("Members' names and e-mails are personal data: listing them needs a role with access to "
                        "customers. The counts and profile below are aggregates.")
            else:
                sort_col, order_col, size_col = st.columns(3)
                sort_by = sort_col.selectbox("Sort by", list(segmentation.MEMBER_SORTS), key="members_sort",
                                             format_func=lambda k: MEMBER_SORT_LABELS.get(k, k))
                descending = order_col.toggle("Descending", key="members_descending")
                page_size = size_col.selectbox("Rows per page", [25, 50, 100], key="members_page_size")
                page_number = st.session_state.get("members_page", 1)
                result = context.cached(segmentation.segment_members, chosen["id"], page=page_number, page_size=page_size,
                             sort_by=sort_by, descending=descending)
                if result is not None:
                    if result.total == 0:
                        st.info("This segment has no members right now.")
                    else:
                        st.dataframe(readable(pd.DataFrame(result.rows), "lifecycle_stage", "loyalty_tier",
                                              **MEMBER_COLUMNS),
                                     hide_index=True, width="stretch",
                                     column_config={"Revenue": st.column_config.NumberColumn("Revenue", format="€%.2f"),
                                                    "Confidence": st.column_config.NumberColumn("Confidence", format="%.2f")})
                        st.caption(f"{result.total:,} members")
                        st.pagination(result.pages, default=min(page_number, result.pages), key="members_page")
                        segment_id = chosen["id"]

                        def members_csv() -> str:
                            with context.session(write=True) as s:  # the export writes its audit row
                                rows = segmentation.iter_member_rows(s, viewer, segment_id)
                                columns = ["id", "name", "email", "country", "city", "status", "order_count", "total_revenue",
                                           "days_since_last_order", "loyalty_tier", "lifecycle_stage", "confidence", "entered_at"]
                                return "".join(platform.csv_chunks(rows, columns))

                        if can_export:
                            st.download_button("Export members as CSV", members_csv, file_name=f"segment-{segment_id}.csv",
                                               mime="text/csv", icon=":material/download:")

            if can_manage and not chosen.get("is_system"):
                with st.expander("Manage this segment"):
                    with st.form("segment_state"):
                        wanted = st.radio("State", ["Active", "Paused"], index=0 if chosen["active"] else 1, horizontal=True)
                        applied = st.form_submit_button("Apply")
                        if applied and context.act(segmentation.set_segment_active, chosen["id"], wanted == "Active") is not None:
                            context.changed()
                            st.session_state["segments_flash"] = f"{chosen['name']} is now {wanted.lower()}."
                            st.rerun()
                    if chosen["kind"] == "static":
                        with st.form("static_members", clear_on_submit=True):
                            ids_text = st.text_input("Customer ids", help="Separated by commas or spaces")
                            add_col, remove_col = st.columns(2)
                            adding = add_col.form_submit_button("Add to the list")
                            removing = remove_col.form_submit_button("Remove from the list")
                            if adding or removing:
                                try:
                                    ids = segmentation.customer_ids(ids_text)
                                except platform.DomainError as exc:
                                    st.error(str(exc))
                                else:
                                    changed = context.act(segmentation.add_members if adding else segmentation.remove_members,
                                                          chosen["id"], ids)
                                    if changed is not None:
                                        context.changed()
                                        verb = "added" if adding else "removed"
                                        st.session_state["segments_flash"] = f"{changed:,} customers {verb}."
                                        st.rerun()

            profile = context.cached(segmentation.segment_profile, chosen["id"])
            if profile and profile["members"]["customers"]:
                st.subheader("Members against the whole base")
                averages = pd.DataFrame({"Members": profile["members"]["averages"], "All customers": profile["base"]["averages"]})
                st.dataframe(averages.rename(index=AVERAGE_LABELS), width="stretch")
                left, right = st.columns(2)
                for column, dimension, title in ((left, "country", "Country"), (right, "lifecycle_stage", "Lifecycle stage")):
                    figure = share_chart(profile["members"], "Members", profile["base"], "All customers", dimension, title)
                    if figure is not None:
                        column.plotly_chart(figure, width="stretch")

if tab_build.open:
    with tab_build:
        if not can_manage:
            st.info("Your role can view segments but not create them.")
        else:
            catalogue = segmentation.field_catalogue()
            field_names = [f["name"] for f in catalogue]
            # The rows keep the stored names ("order_count", "ge"); people pick and read them in words.
            field_labels = {f["name"]: f["label"] for f in catalogue}
            operator_labels = {o["op"]: o["label"] for f in catalogue for o in f["operators"]}
            operators = list(operator_labels)
            with st.expander("Fields and their operators"):
                st.dataframe(pd.DataFrame([
                    {"Field": f["label"], "Type": f["type"],
                     "Operators": ", ".join(o["label"] for o in f["operators"]), "Choices": ", ".join(f["choices"]),
                     "Name in JSON rules": f["name"]}
                    for f in catalogue
                ]), hide_index=True, width="stretch")
            mode = st.radio("Rules", ["Conditions", "JSON with nested groups"], horizontal=True, key="rules_mode")
            rules, rules_error = None, None
            if mode == "Conditions":
                combinator = st.radio("Match", ["all", "any"], horizontal=True, key="rules_match",
                                      format_func=lambda v: "all conditions (AND)" if v == "all" else "any condition (OR)")
                starter = pd.DataFrame([{"field": "order_count", "op": "ge", "value": "3"},
                                        {"field": "days_since_last_order", "op": "le", "value": "90"}])
                if "rule_rows" not in st.session_state:  # drawn afresh: at first, or back from another tab
                    st.session_state["rule_rows_base"] = st.session_state.get("rule_rows_edited", starter)
                edited = st.data_editor(
                    st.session_state["rule_rows_base"], num_rows="dynamic", hide_index=True, width="stretch", key="rule_rows",
                    column_config={
                        "field": st.column_config.SelectboxColumn("Field", options=field_names, required=True,
                                                                  format_func=lambda f: field_labels.get(f, f)),
                        "op": st.column_config.SelectboxColumn("Operator", options=operators, required=True,
                                                               format_func=lambda o: operator_labels.get(o, o)),
                        "value": st.column_config.TextColumn("Value", help="Lists and 'between': values separated by commas"),
                    },
                )
                st.session_state["rule_rows_edited"] = edited  # the rows as edited, for when the tab is drawn again
                try:
                    rules = segmentation.rules_from_rows(edited.to_dict("records"), combinator)
                except platform.DomainError as exc:
                    rules_error = str(exc)
            else:
                text = st.text_area("Rules (JSON)", height=180, key="rules_json")
                try:
                    rules = segmentation.parse_rules(text)
                except platform.DomainError as exc:
                    rules_error = str(exc)
            if rules_error:
                st.error(rules_error)
            elif st.button("Preview", icon=":material/visibility:"):
                preview = context.read(segmentation.preview_rules, rules, as_of, sample=20)
                if preview is not None:
                    st.metric("Matching customers", f"{preview['count']:,}")
                    if preview["sample"]:
                        st.dataframe(readable(pd.DataFrame(preview["sample"]), "lifecycle_stage", **MEMBER_COLUMNS),
                                     hide_index=True, width="stretch")

            with st.form("save_segment", clear_on_submit=False):
                st.markdown("**Save as a dynamic segment**")
                name_input = st.text_input("Name")
                kinds = [t for t in SEGMENT_TYPES if t not in segmentation.MODEL_SEGMENT_TYPES]
                type_input = st.selectbox("Type", kinds, index=kinds.index("behavioural"), format_func=SEGMENT_TYPE_LABELS.get)
                priority_input = st.number_input("Priority", min_value=0, max_value=1000, value=100, step=10)
                description_input = st.text_input("Description")
                if st.form_submit_button("Save segment", type="primary"):
                    if rules is None:
                        st.error(rules_error or "Fix the rules first.")
                    else:
                        try:
                            with context.session() as s:
                                actor = platform.load_actor(s, viewer)
                                created = segmentation.create_segment(s, actor, name_input, type_input, "dynamic", rules=rules,
                                                                  priority=int(priority_input), description=description_input)
                                refreshed = segmentation.refresh_memberships(s, as_of, segment_ids=[created.id])
                            count = refreshed[created.name]["members"]
                        except platform.DomainError as exc:
                            st.error(str(exc))
                        else:
                            context.changed()
                            st.session_state["segments_flash"] = f"Saved {created.name} with {count:,} members."
                            st.rerun()

            with st.form("static_segment"):
                st.markdown("**Or keep a hand-made list (static segment)**")
                static_name = st.text_input("Name", key="static_name")
                ids_text = st.text_area("Customer ids", help="Separated by commas, spaces or new lines")
                if st.form_submit_button("Create list"):
                    try:
                        ids = segmentation.customer_ids(ids_text)
                        with context.session() as s:
                            actor = platform.load_actor(s, viewer)
                            created = segmentation.create_segment(s, actor, static_name, "custom", "static")
                            segmentation.add_members(s, actor, created.id, ids)
                    except platform.DomainError as exc:
                        st.error(str(exc))
                    else:
                        context.changed()
                        st.session_state["segments_flash"] = f"Created {created.name} with {len(set(ids)):,} customers."
                        st.rerun()

if tab_compare.open:
    with tab_compare:
        if len(all_segments) < 2:
            st.info("Two segments are needed for a comparison.")
        else:
            names = list(by_name)
            st.session_state.setdefault("compare_b", names[1])  # the first value through session state only (see keep)
            left_name = st.selectbox("First segment", names, key="compare_a")
            right_name = st.selectbox("Second segment", names, key="compare_b")
            comparison = context.cached(segmentation.compare_segments, by_name[left_name]["id"], by_name[right_name]["id"])
            if comparison:
                c1, c2, c3, c4 = st.columns(4)
                c1.metric(plain(left_name), f"{comparison['a']['members']:,}", border=True)
                c2.metric(plain(right_name), f"{comparison['b']['members']:,}", border=True)
                c3.metric("In both", f"{comparison['overlap']:,}", border=True)
                c4.metric("Overlap (Jaccard)", f"{comparison['jaccard'] * 100:.1f}%", border=True)
                profiles = comparison["profiles"]
                st.dataframe(pd.DataFrame({left_name: profiles["a"]["averages"], right_name: profiles["b"]["averages"]})
                             .rename(index=AVERAGE_LABELS), width="stretch")
                left, right = st.columns(2)
                for column, dimension, title in ((left, "loyalty_tier", "Loyalty tier"), (right, "lifecycle_stage", "Lifecycle stage")):
                    figure = share_chart(profiles["a"], left_name, profiles["b"], right_name, dimension, title)
                    if figure is not None:
                        column.plotly_chart(figure, width="stretch")
