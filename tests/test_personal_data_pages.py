"""Personal data only through permission and audit, as each role meets it on the Segments page."""

from __future__ import annotations

from .apptest_support import open_page, open_tab


def test_an_executive_sees_segment_figures_but_no_members(app):
    open_page(app, "exec1", "segments")
    open_tab(app, "segments_tab", "Segment detail")
    assert not app.exception
    assert any(m.label == "Members" for m in app.metric)
    assert any("personal data" in i.value for i in app.info)
    shown = [df.value for df in app.dataframe]
    assert not any({"email", "E-mail"} & set(frame.columns) for frame in shown)
    assert not [b for b in app.get("download_button")]


def test_an_analyst_sees_members_and_may_export_them(app):
    open_page(app, "analyst1", "segments")
    open_tab(app, "segments_tab", "Segment detail")
    assert not app.exception
    assert any("E-mail" in df.value.columns for df in app.dataframe)
    assert [b.proto.label for b in app.get("download_button")] == ["Export members as CSV"]


def test_an_executive_reads_top_customers_by_number(app):
    open_page(app, "exec1", "overview")
    assert not app.exception
    top = next(df.value for df in app.dataframe if "revenue" in df.value.columns and "orders" in df.value.columns)
    assert "email" not in top.columns
    assert top["name"].str.startswith("Customer #").all()


def test_a_success_manager_sees_who_the_top_customers_are(app):
    open_page(app, "csm1", "overview")
    top = next(df.value for df in app.dataframe if "revenue" in df.value.columns and "orders" in df.value.columns)
    assert "email" in top.columns and not top["name"].str.startswith("Customer #").any()
