"""Import / Export: customers, orders (a transaction log or a Shopify export), support tickets and
communications from CSV, Excel or JSON (mapping, preview, dedupe), and customer exports."""

import os
import tempfile

import pandas as pd
import plotly.express as px
import streamlit as st

from crm_core import customers, imports, platform, segmentation
from ui import context
from ui.charts import shared
from ui.format import plain

IGNORE = "(ignore)"
KINDS = {"customers": "Customers", "orders": "Orders (transaction log)", "shopify": "Shopify orders export",
         "tickets": "Support tickets", "communications": "Communications"}
SHOPIFY_PREVIEW_COLUMNS = ["Name", "Email", "Financial Status", "Created at", "Total", "Refunded Amount", "Currency",
                           "Lineitem quantity", "Lineitem name", "Lineitem price", "Lineitem sku"]
EXPORT_IDS_KEY = "export_customer_ids"  # a page (customer search) may put a list of customer ids here


@shared
def outcomes_chart(totals: list):
    return px.bar(x=["Imported", "Updated", "Skipped", "Invalid"], y=totals,
                  title="Rows by outcome (this page of runs)", labels={"x": "", "y": "Rows"})


viewer = context.require_page("customers.export")
can_import = platform.allowed(viewer.role, "customers.import")
st.title("Import / Export")
if flash := st.session_state.pop("import_export_flash", None):
    st.success(flash)


def field_label(name: str) -> str:
    return imports.CUSTOMER_FIELDS.get(name, name)


def mapping_key(column: str) -> str:
    return f"map::{column}"


def load_mapping(saved: dict, columns: list[str]) -> None:
    for column in columns:
        st.session_state[mapping_key(column)] = saved["mapping"].get(column, IGNORE)


def import_tab() -> None:
    kind = st.radio("What to import", list(KINDS), format_func=KINDS.get, horizontal=True, key="import_kind")
    if kind == "customers":
        customers_import()
    elif kind == "shopify":
        shopify_import()
    else:
        mapped_import(kind)


def customers_import() -> None:
    st.caption(
        "Columns named " + ", ".join(imports.STANDARD_COLUMNS) + " need no mapping. "
        "CSV (UTF-8), Excel (.xlsx, first sheet) or JSON (an array of objects, or JSON Lines). "
        "Dates as YYYY-MM-DD, DD.MM.YYYY or DD/MM/YYYY; countries as ISO codes or English names."
    )
    uploaded = st.file_uploader("File to import", type=["csv", "txt", "xlsx", "json", "jsonl"], key="import_file")
    if uploaded is None:
        st.info("Upload a file to map its columns, preview the rows and import them.")
        show_result()
        return
    try:
        columns, _ = imports.preview_customers(uploaded, file_name=uploaded.name, limit=1)
    except platform.DomainError as exc:
        st.error(str(exc))
        return
    defaults = imports.default_customer_mapping(columns)

    st.subheader("Column mapping")
    saved = context.read(imports.list_mappings) or []
    saved_by_name = {m["name"]: m for m in saved}
    if saved_by_name:
        load_col, button_col = st.columns([3, 1], vertical_alignment="bottom")
        chosen_saved = load_col.selectbox("Saved mapping", list(saved_by_name), key="saved_mapping")
        button_col.button("Load mapping", on_click=load_mapping, args=(saved_by_name[chosen_saved], columns),
                          icon=":material/upload:")
    options = [IGNORE, *imports.CUSTOMER_FIELDS]
    grid = st.columns(3)
    mapping: dict[str, str] = {}
    for position, column in enumerate(columns):
        key = mapping_key(column)
        if key not in st.session_state or st.session_state[key] not in options:
            st.session_state[key] = defaults.get(column, IGNORE)
        target = grid[position % 3].selectbox(f"Column “{column}”", options, key=key,
                                              format_func=lambda v: v if v == IGNORE else field_label(v))
        if target != IGNORE:
            mapping[column] = target
    with st.form("save_mapping", clear_on_submit=True):
        name_col, shared_col, save_col = st.columns([3, 1, 1], vertical_alignment="bottom")
        mapping_name = name_col.text_input("Save this mapping as")
        shared = shared_col.checkbox("Shared", help="Visible to every user who may import")
        if save_col.form_submit_button("Save mapping"):
            existing = saved_by_name.get(mapping_name.strip())
            context.act(imports.save_mapping, mapping_name, mapping, shared,
                        expected_version=existing["version"] if existing else None,
                        success=f"Saved the mapping {mapping_name.strip()!r}.")

    mapping_problem = None
    try:
        imports.check_customer_mapping(mapping, columns)
    except platform.DomainError as exc:
        mapping_problem = str(exc)
        st.warning(mapping_problem)

    st.subheader("Preview")
    try:
        _, rows = imports.preview_customers(uploaded, file_name=uploaded.name, mapping=mapping, limit=20)
    except platform.DomainError as exc:
        st.error(str(exc))
        return
    preview_table(rows)

    st.subheader("Duplicates and import")
    left, right = st.columns(2)
    policy = left.radio("When a row matches an existing customer", imports.DUPLICATE_POLICIES, horizontal=True,
                        format_func={"skip": "Skip it", "update": "Update the customer",
                                     "create": "Create anyway"}.get, key="import_policy")
    threshold = right.slider("Name similarity that counts as a duplicate (0 = off)", 0, 100,
                             imports.DEFAULT_FUZZY_THRESHOLD, key="import_threshold")
    if st.button("Import", type="primary", icon=":material/publish:", disabled=mapping_problem is not None):
        run_import(uploaded, mapping, policy, threshold)
    show_result()


def run_import(uploaded, mapping: dict[str, str], policy: str, threshold: int) -> None:
    bar = st.progress(0.0, text="Reading the file…")

    def on_progress(fraction: float | None, rows: int) -> None:
        bar.progress(min(1.0, fraction or 0.0), text=f"{rows:,} rows read")

    handle, errors_path = tempfile.mkstemp(suffix=".csv", prefix="import-errors-")
    os.close(handle)
    try:
        with context.session() as s:
            actor = platform.load_actor(s, viewer)
            report = imports.import_customers(
                s, actor, uploaded, file_name=uploaded.name, mapping=mapping, on_duplicate=policy,
                fuzzy_threshold=threshold, errors_path=errors_path, progress=on_progress,
            )
        with open(errors_path, "rb") as error_file:
            error_bytes = error_file.read()
    except platform.DomainError as exc:
        bar.empty()
        st.error(f"Nothing was imported: {exc}")
        context.act(imports.record_failed_run, "customers", uploaded.name, uploaded.name.rsplit(".", 1)[-1],
                    policy, str(exc))
        return
    finally:
        os.unlink(errors_path)
    bar.progress(1.0, text="Done")
    st.session_state["import_result"] = {
        "file": report.file_name, "counts": report.counts(), "wrote": report.wrote_rows, "seconds": report.seconds,
        "errors": [vars(e) for e in report.errors[:500]], "error_csv": error_bytes,
        "duplicates": [vars(d) for d in report.duplicates[:500]],
    }


def show_result() -> None:
    result = st.session_state.get("import_result")
    if not result:
        return
    if "figures" in result:
        show_figures(result)
        return
    counts = result["counts"]
    st.subheader(f"Last import: {plain(result['file'])}")
    cols = st.columns(5)
    labels = [("rows_read", "Rows read"), ("created", "Imported"), ("updated", "Updated"),
              ("skipped", "Skipped as duplicates"), ("invalid", "Invalid")]
    for column, (key, label) in zip(cols, labels, strict=True):
        column.metric(label, f"{counts[key]:,}", border=True)
    st.caption(f"Finished in {result['seconds']:.1f}s.")
    if result["wrote"]:
        refresh_note()
    if result["errors"]:
        st.dataframe(pd.DataFrame(result["errors"]), hide_index=True, width="stretch",
                     column_config={"row": st.column_config.NumberColumn("Row", format="%d"),
                                    "identifier": "Identifier", "reason": "Reason"})
        st.download_button("Download the error file", result["error_csv"], file_name="import-errors.csv",
                           mime="text/csv", icon=":material/download:")
    if result["duplicates"]:
        with st.expander(f"Duplicates ({counts['skipped'] + counts['updated']:,})"):
            st.dataframe(pd.DataFrame(result["duplicates"]), hide_index=True, width="stretch")


# --------------------------------------------------------------------------- orders, Shopify, tickets, messages

FIELDS = {"orders": imports.ORDER_FIELDS, "tickets": imports.TICKET_FIELDS,
          "communications": imports.COMMUNICATION_FIELDS}
CAPTIONS = {
    "orders": "One order per row (customer id or email, date, amount; optionally quantity, order number, status, "
              "currency), or with a product column one order line per row of the order its order number names. "
              "Columns named like the fields need no mapping. Importing the same file again adds nothing.",
    "tickets": "A helpdesk's tickets for existing customers, found by customer_external_id or customer_email. "
               "Required: ticket_id, created_at and one of the customer columns. Imported tickets get no SLA "
               "clock, so old tickets raise no SLA breaches; a ticket imported before is skipped.",
    "communications": "Email, SMS and call history for existing customers, found by customer_external_id or "
                      "customer_email. Required: channel, sent_at and one of the customer columns. A message "
                      "imported before is skipped.",
}


def kind_mapping_key(kind: str, column: str) -> str:
    return f"map::{kind}::{column}"


def load_kind_mapping(kind: str, saved: dict, columns: list[str]) -> None:
    for column in columns:
        st.session_state[kind_mapping_key(kind, column)] = saved["mapping"].get(column, IGNORE)


def upload(kind: str):
    uploaded = st.file_uploader("File to import", type=["csv", "txt", "xlsx", "json", "jsonl"],
                                key=f"import_file::{kind}")
    if uploaded is None:
        st.info("Upload a file to map its columns, preview the rows and import them.")
        show_result()
    return uploaded


def preview_table(rows) -> None:
    own = ("row", "status", "reason")  # a file column of the same name is shown as "status (file)"
    table = pd.DataFrame([{"row": r.row, "status": r.status, "reason": r.reason,
                           **{f"{k} (file)" if k in own else k: v for k, v in r.values.items()}} for r in rows])
    ok = sum(r.status == "ok" for r in rows)
    skipped = sum(r.status == "skipped" for r in rows)
    c1, c2, c3 = st.columns(3) if skipped else (*st.columns(2), None)
    c1.metric("Valid rows in the preview", f"{ok:,}", border=True)
    c2.metric("Invalid rows in the preview", f"{len(rows) - ok - skipped:,}", border=True)
    if c3 is not None:
        c3.metric("Already imported", f"{skipped:,}", border=True)
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "row": st.column_config.NumberColumn("Row", format="%d"), "status": "Status", "reason": "Problem"})


def mapped_import(kind: str) -> None:
    st.caption(CAPTIONS[kind])
    uploaded = upload(kind)
    if uploaded is None:
        return
    try:
        columns = imports.file_columns(uploaded, file_name=uploaded.name)
    except platform.DomainError as exc:
        st.error(str(exc))
        return
    fields = FIELDS[kind]
    defaults = (imports.default_order_mapping(columns) if kind == "orders"
                else imports.default_service_mapping(kind, columns))

    st.subheader("Column mapping")
    saved = context.read(imports.list_mappings, kind) or []
    saved_by_name = {m["name"]: m for m in saved}
    if saved_by_name:
        load_col, button_col = st.columns([3, 1], vertical_alignment="bottom")
        chosen_saved = load_col.selectbox("Saved mapping", list(saved_by_name), key=f"saved_mapping::{kind}")
        button_col.button("Load mapping", on_click=load_kind_mapping,
                          args=(kind, saved_by_name[chosen_saved], columns), icon=":material/upload:")
    options = [IGNORE, *fields]
    grid = st.columns(3)
    mapping: dict[str, str] = {}
    for position, column in enumerate(columns):
        key = kind_mapping_key(kind, column)
        if key not in st.session_state or st.session_state[key] not in options:
            st.session_state[key] = defaults.get(column, IGNORE)
        target = grid[position % 3].selectbox(f"Column “{column}”", options, key=key,
                                              format_func=lambda v: v if v == IGNORE else fields[v])
        if target != IGNORE:
            mapping[column] = target
    with st.form(f"save_mapping::{kind}", clear_on_submit=True):
        name_col, shared_col, save_col = st.columns([3, 1, 1], vertical_alignment="bottom")
        mapping_name = name_col.text_input("Save this mapping as")
        shared = shared_col.checkbox("Shared", help="Visible to every user who may import")
        if save_col.form_submit_button("Save mapping"):
            existing = saved_by_name.get(mapping_name.strip())
            context.act(imports.save_mapping, mapping_name, mapping, shared, entity=kind,
                        expected_version=existing["version"] if existing else None,
                        success=f"Saved the mapping {mapping_name.strip()!r}.")

    arguments = None
    try:
        if kind == "orders":
            arguments = imports.check_order_mapping(mapping, columns)
        else:
            imports.check_service_mapping(kind, mapping, columns)
    except platform.DomainError as exc:
        st.warning(str(exc))

    st.subheader("Preview")
    try:
        if kind == "orders":
            rows = imports.preview_orders(uploaded, arguments, file_name=uploaded.name) if arguments else []
        else:
            _, rows = imports.preview_service_file(kind, uploaded, file_name=uploaded.name, mapping=mapping)
    except platform.DomainError as exc:
        st.error(str(exc))
        return
    if rows:
        preview_table(rows)
    if st.button("Import", type="primary", icon=":material/publish:", key=f"import::{kind}",
                 disabled=kind == "orders" and arguments is None):
        if kind == "orders":
            run_kind_import(kind, uploaded, lambda s, actor, errors_path, progress: imports.import_orders(
                s, actor, uploaded, **arguments, file_name=uploaded.name, errors_path=errors_path, progress=progress))
        else:
            run_kind_import(kind, uploaded, lambda s, actor, errors_path, progress: imports.import_service_file(
                s, actor, kind, uploaded, mapping=mapping, file_name=uploaded.name, errors_path=errors_path,
                progress=progress))
    show_result()


def shopify_import() -> None:
    st.caption("The orders export of Shopify admin (Orders > Export > CSV), one row per line item; its own columns, "
               "so no mapping. Refunded and cancelled orders are imported with that status and count neither as "
               "revenue nor as purchases; a partial refund lowers the order's revenue. Orders in another currency "
               "than the shop's are listed as invalid. Importing the same export again adds nothing.")
    uploaded = upload("shopify")
    if uploaded is None:
        return
    try:
        with context.session() as s:
            columns, rows = imports.preview_shopify(uploaded, file_name=uploaded.name, session=s)
    except platform.DomainError as exc:
        st.error(str(exc))
        return
    st.subheader("Preview")
    shown = [c for c in SHOPIFY_PREVIEW_COLUMNS if c in columns]
    rows = [imports.PreviewRow(r.row, {c: r.values.get(c, "") for c in shown}, r.status, r.reason) for r in rows]
    preview_table(rows)
    st.caption(f"The file has {len(columns)} columns; the preview shows the ones an order is made of.")
    if st.button("Import", type="primary", icon=":material/publish:", key="import::shopify"):
        run_kind_import("orders", uploaded, lambda s, actor, errors_path, progress: imports.import_shopify_orders(
            s, actor, uploaded, file_name=uploaded.name, errors_path=errors_path, progress=progress),
            file_format="shopify")
    show_result()


def run_kind_import(entity: str, uploaded, run, file_format: str | None = None) -> None:
    bar = st.progress(0.0, text="Reading the file…")

    def on_progress(fraction: float | None, rows: int) -> None:
        bar.progress(min(1.0, fraction or 0.0), text=f"{rows:,} rows read")

    handle, errors_path = tempfile.mkstemp(suffix=".csv", prefix="import-errors-")
    os.close(handle)
    try:
        with context.session() as s:
            report = run(s, platform.load_actor(s, viewer), errors_path, on_progress)
        with open(errors_path, "rb") as error_file:
            error_bytes = error_file.read()
    except platform.DomainError as exc:
        bar.empty()
        st.error(f"Nothing was imported: {exc}")
        context.act(imports.record_failed_run, entity, uploaded.name,
                    file_format or uploaded.name.rsplit(".", 1)[-1], None, str(exc))
        return
    finally:
        os.unlink(errors_path)
    bar.progress(1.0, text="Done")
    st.session_state["import_result"] = {
        "file": report.file_name, "figures": report.figures(), "notes": report.notes(), "wrote": report.wrote_rows,
        "seconds": report.seconds,
        "errors": [vars(e) for e in report.errors[:500]], "error_csv": error_bytes,
    }


def show_figures(result: dict) -> None:
    st.subheader(f"Last import: {plain(result['file'])}")
    figures = result["figures"]
    for start in range(0, len(figures), 4):
        for column, (label, value) in zip(st.columns(4), figures[start:start + 4], strict=False):
            column.metric(label[:1].upper() + label[1:], f"{value:,}", border=True)
    for note in result["notes"]:
        st.caption(note)
    st.caption(f"Finished in {result['seconds']:.1f}s.")
    if result["wrote"]:
        refresh_note()
    if result["errors"]:
        st.dataframe(pd.DataFrame(result["errors"]), hide_index=True, width="stretch",
                     column_config={"row": st.column_config.NumberColumn("Row", format="%d"),
                                    "identifier": "Identifier", "reason": "Reason"})
        st.download_button("Download the error file", result["error_csv"], file_name="import-errors.csv",
                           mime="text/csv", icon=":material/download:")


def refresh_note() -> None:
    """After rows were written: lists read them now, but the dashboards read the last batch refresh."""
    st.info("Customer lists and Customer 360 show the imported rows now. The dashboards (Executive overview, "
            "Segments, Lifecycle, Customer value, Churn, Health, Forecast, Journeys) show figures from the last "
            "batch refresh: they include this import only after the next refresh."
            + ("" if platform.allowed(viewer.role, "refresh.run") else " An administrator runs it on the Refresh runs "
               "page."), icon=":material/update:")
    if platform.allowed(viewer.role, "refresh.run"):
        st.page_link("pages/refresh_runs.py", label="Run the refresh now on the Refresh runs page",
                     icon=":material/update:")


def export_tab() -> None:
    search_ids = st.session_state.get(EXPORT_IDS_KEY)
    scopes = ["All customers", "A segment"] + (["The search result"] if search_ids else [])
    scope = st.radio("Customers", scopes, horizontal=True, key="export_scope")
    segment_name = None
    if scope == "A segment":
        listing = [s for s in (context.read(segmentation.list_segments) or []) if s["active"]]
        if not listing:
            st.info("There are no active segments to export yet.")
            return
        segment_name = st.selectbox("Segment", [s["name"] for s in listing], key="export_segment")
    left, right = st.columns([1, 3])
    fmt = left.selectbox("Format", customers.EXPORT_FORMATS, key="export_format",
                         format_func={"csv": "CSV", "xlsx": "Excel (.xlsx)", "json": "JSON"}.get)
    columns = right.multiselect("Columns", list(customers.EXPORT_COLUMNS), default=customers.DEFAULT_EXPORT_COLUMNS,
                                key="export_columns")
    if scope == "The search result":
        in_scope = len(search_ids)
    else:
        in_scope = context.read(customers.count_exported, segment=segment_name)
    if in_scope is None:
        return
    st.metric("Customers in scope", f"{in_scope:,}", border=True)
    st.caption("Text that a spreadsheet would run as a formula (starting with =, +, -, @) is written with a "
               "leading apostrophe. Merged and erased customers are never exported.")
    if in_scope == 0:
        st.info("No customers to export in this scope.")
        return
    if st.button("Prepare export", icon=":material/download:", disabled=not columns):
        prepared = context.act(customers.export_bytes, fmt, columns, segment=segment_name,
                               customer_ids=search_ids if scope == "The search result" else None)
        if prepared is not None:
            data, count = prepared
            st.session_state["export_ready"] = {"data": data, "count": count, "fmt": fmt}
    ready = st.session_state.get("export_ready")
    if ready:
        st.download_button(f"Download {ready['count']:,} customers ({ready['fmt']})", ready["data"],
                           file_name=f"customers.{ready['fmt']}", mime=customers.EXPORT_MIME_TYPES[ready["fmt"]],
                           type="primary", icon=":material/download:", on_click="ignore")


def history_tab() -> None:
    page_number = st.session_state.get("import_runs_page", 1)
    found = context.read(imports.recent_import_runs, page=page_number, page_size=20)
    if found is None:
        return
    if found.total == 0:
        st.info("No imports yet.")
        return
    frame = pd.DataFrame(found.rows)
    totals = frame[["created", "updated", "skipped", "invalid"]].sum()
    st.plotly_chart(outcomes_chart(totals.to_list()), width="stretch")
    st.dataframe(frame, hide_index=True, width="stretch", column_config={
        "started_at": st.column_config.DatetimeColumn("Started", format="YYYY-MM-DD HH:mm"),
        "message": "Message"})
    st.caption(f"{found.total:,} imports")
    st.pagination(found.pages, default=min(page_number, found.pages), key="import_runs_page")


if can_import:
    tab_import, tab_export, tab_history = st.tabs(["Import", "Export customers", "Import history"], key="transfer_tab")
    with tab_import:
        import_tab()
    with tab_export:
        export_tab()
    with tab_history:
        history_tab()
else:
    st.caption("Your role can export customers; imports need an administrator. Export columns named like the "
               "import columns need no mapping when imported again.")
    export_tab()
