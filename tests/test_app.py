"""The Streamlit app under AppTest: sign-in, navigation by role, every page renders real figures."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

import demo
from crm_core import platform
from db.engine import make_engine
from db.models import ROLES, Customer, User
from ui.context import USER_KEY
from ui.navigation import PAGES, pages_for

from .apptest_support import APP, ROOT, open_tab, registered_scripts, sign_in, titles

EXPECTED_PAGES = {
    "admin": {"Executive overview", "Social", "Journeys", "Success workbench", "Campaigns", "API tokens", "Duplicates & merge", "Privacy requests", "Refresh runs", "Segments", "Lifecycle", "Customer value", "Forecast", "Churn", "Health", "Users", "Audit log", "Import / Export", "Complaints", "Communications", "Loyalty", "Customers", "Customer 360", "Support queue", "Ticket", "SLA", "Risk reviews", "Referrals"},
    "analyst": {"Executive overview", "Social", "Journeys", "Campaigns", "API tokens", "Segments", "Lifecycle", "Customer value", "Forecast", "Churn", "Health", "Import / Export", "Communications", "Loyalty", "Customers", "Customer 360", "Referrals"},
    "success_manager": {"Executive overview", "Social", "Journeys", "Success workbench", "Campaigns", "API tokens", "Duplicates & merge", "Segments", "Lifecycle", "Customer value", "Churn", "Health", "Complaints", "Communications", "Loyalty", "Customers", "Customer 360", "Support queue", "Ticket", "SLA", "Risk reviews", "Referrals"},
    "support_agent": {"Executive overview", "Social", "API tokens", "Complaints", "Communications", "Loyalty", "Customers", "Customer 360", "Support queue", "Ticket", "SLA"},
    "executive": {"Executive overview", "Social", "Journeys", "Success workbench", "Campaigns", "API tokens", "Segments", "Lifecycle", "Customer value", "Forecast", "Churn", "Health", "Complaints", "Loyalty", "SLA", "Referrals"},
    "risk_analyst": {"Executive overview", "Social", "API tokens", "Customers", "Customer 360", "Risk reviews", "Referrals"},
}


def test_page_catalogue_per_role():
    for role in ROLES:
        assert {p.title for p in pages_for(role)} == EXPECTED_PAGES[role]


def test_anonymous_visitor_sees_only_sign_in(app):
    app.run()
    assert not app.exception
    assert titles(app) == ["Customer Intelligence"]
    assert [b.label for b in app.button] == ["Sign in"]


def test_wrong_password_is_refused_with_a_message(app):
    sign_in(app, "analyst1", "not-the-password")
    assert not app.exception
    assert "wrong password" in app.error[0].value
    assert titles(app) == ["Customer Intelligence"]


@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_its_pages_and_no_others(app, app_db, role):
    username = f"{demo.ROLE_USERNAMES[role]}1"
    sign_in(app, username, demo.demo_password(username))
    assert not app.exception
    assert titles(app) == ["Executive overview"]
    with make_engine(app_db).connect() as connection:
        customers = connection.scalar(select(func.count()).select_from(Customer).where(Customer.status.not_in(["merged", "erased"])))
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Customers"] == f"{customers:,}"

    allowed = {p.path.split("/")[-1] for p in pages_for(role)}
    assert registered_scripts(app) == allowed
    for page in PAGES:
        if page.path.split("/")[-1] in allowed:
            app.switch_page(str(ROOT / page.path)).run()
            assert not app.exception, page.title
            assert titles(app) == [page.title]
        else:
            # Not in this role's navigation: AppTest refuses the switch, or the app falls back
            # to the default page; either way the page never renders.
            try:
                app.switch_page(str(ROOT / page.path)).run()
            except ValueError as exc:
                assert "Could not find a navigation page" in str(exc)
            else:
                assert not app.exception
                assert page.title not in titles(app)


@pytest.mark.parametrize("page", [p for p in PAGES if not all(platform.allowed(r, p.permission) for r in ROLES)],
                         ids=lambda p: p.title)
def test_page_guard_stops_a_role_without_permission(app_db, monkeypatch, page):
    """Even if a page file is reached directly, it refuses a role that lacks the permission."""
    monkeypatch.setenv("CRM_DATABASE_URL", app_db)
    at = AppTest.from_file(str(ROOT / page.path), default_timeout=60)
    role = next(r for r in ROLES if not platform.allowed(r, page.permission))
    with make_engine(app_db).connect() as connection:
        outsider = connection.execute(select(User).where(User.role == role)).first()
    at.session_state[USER_KEY] = platform.SignedInUser(outsider.id, outsider.username, outsider.full_name, role)
    at.run()
    assert not app_exceptions(at)
    assert [e.value for e in at.error] == ["You do not have access to this page."]
    assert titles(at) == []


def app_exceptions(at: AppTest):
    return list(at.exception)


def _fill_create_user_form(app: AppTest, admin: str, **typed: str) -> None:
    """Sign in as `admin`, open Users and type into the create form (fields by label)."""
    sign_in(app, admin, demo.demo_password(admin))
    app.switch_page(str(ROOT / "pages/admin.py")).run()
    form_inputs = {t.label: t for t in app.text_input}
    for label, value in typed.items():
        form_inputs[label].input(value)


def test_admin_creates_a_user_through_the_form(app, app_db):
    _fill_create_user_form(app, "admin1", **{"Username": "newhire", "Full name": "New Hire",
                                              "Initial password": "orchid-lantern-42"})
    next(s for s in app.selectbox if s.label == "Role").select("support_agent")
    next(b for b in app.button if b.label == "Create user").click().run()
    assert not app.exception
    assert any("Created newhire as support_agent" in s.value for s in app.success)
    # After a successful create the form is empty again, ready for the next person.
    assert {t.label: t.value for t in app.text_input}["Username"] == ""
    with make_engine(app_db).connect() as connection:
        assert connection.scalar(select(User.role).where(User.username == "newhire")) == "support_agent"
    # The change is in the audit log page.
    app.switch_page(str(ROOT / "pages/audit_log.py")).run()
    assert not app.exception
    assert "user.create" in app.dataframe[0].value["action"].tolist()


def test_admin_form_shows_validation_errors(app):
    _fill_create_user_form(app, "admin2", **{"Username": "x", "Initial password": "orchid-lantern-42"})
    next(b for b in app.button if b.label == "Create user").click().run()
    assert not app.exception
    assert any("3-64 characters" in e.value for e in app.error)


def test_admin_create_user_keeps_the_typed_fields_after_a_refusal(app, app_db):
    _fill_create_user_form(app, "admin2", **{"Username": "shortpw", "Full name": "Short Password",
                                              "Email": "short.pw@example.com", "Initial password": "tooshort"})
    next(b for b in app.button if b.label == "Create user").click().run()
    assert not app.exception
    assert any("at least 12 characters" in e.value for e in app.error)
    typed = {t.label: t.value for t in app.text_input}
    assert (typed["Username"], typed["Full name"], typed["Email"]) == ("shortpw", "Short Password", "short.pw@example.com")
    # A better password then creates the user from the kept fields.
    next(t for t in app.text_input if t.label == "Initial password").input("orchid-lantern-42")
    next(b for b in app.button if b.label == "Create user").click().run()
    assert any("Created shortpw" in s.value for s in app.success)
    assert {t.label: t.value for t in app.text_input}["Full name"] == ""
    with make_engine(app_db).connect() as connection:
        assert connection.scalar(select(User.email).where(User.username == "shortpw")) == "short.pw@example.com"


def test_users_table_says_never_for_an_account_not_yet_signed_in(app):
    sign_in(app, "admin2", demo.demo_password("admin2"))
    app.switch_page(str(ROOT / "pages/admin.py")).run()
    assert app.dataframe[0].proto.placeholder == "never"


def test_sign_out_returns_to_sign_in(app):
    sign_in(app, "exec1", demo.demo_password("exec1"))
    next(b for b in app.sidebar.button if b.label == "Sign out").click().run()
    assert USER_KEY not in app.session_state
    assert "Executive overview" not in titles(app)
    app.switch_page(APP).run()
    assert titles(app) == ["Customer Intelligence"]


def test_analyst_builds_a_segment_through_the_page(app, app_db):
    sign_in(app, "analyst1", demo.demo_password("analyst1"))
    app.switch_page(str(ROOT / "pages/segments.py")).run()
    assert not app.exception
    open_tab(app, "segments_tab", "Build a segment")
    # The rule rows keep the stored names ("order_count", "ge") and show them in words.
    editor = json.loads(next(d for d in app.dataframe if "op" in d.value.columns).proto.columns)
    shown = {option["value"]: option["label"] for option in editor["op"]["type_config"]["options"]}
    assert shown["ge"] == "is at least" and shown["le"] == "is at most"
    fields = {option["value"]: option["label"] for option in editor["field"]["type_config"]["options"]}
    assert not [label for label in fields.values() if "_" in label]
    catalogue = next(d.value for d in app.dataframe if "Operators" in d.value.columns)
    assert not catalogue["Operators"].str.contains(r"\bge\b|\ble\b").any()
    # The default conditions (3+ orders, ordered in the last 90 days) preview and save.
    next(b for b in app.button if b.label == "Preview").click().run()
    assert not app.exception
    matching = next(m for m in app.metric if m.label == "Matching customers").value
    next(t for t in app.text_input if t.label == "Name").input("Recent repeat buyers")
    next(b for b in app.button if b.label == "Save segment").click().run()
    assert not app.exception
    assert any(f"Saved Recent repeat buyers with {matching} members." == s.value for s in app.success)
    with make_engine(app_db).connect() as connection:
        from db.models import CustomerSegment, CustomerSegmentMembership

        segment_id = connection.scalar(select(CustomerSegment.id).where(CustomerSegment.name == "Recent repeat buyers"))
        members = connection.scalar(select(func.count()).select_from(CustomerSegmentMembership).where(
            CustomerSegmentMembership.segment_id == segment_id, CustomerSegmentMembership.is_active.is_(True)))
    assert f"{members:,}" == matching
    # The detail tab lists the new segment's members.
    open_tab(app, "segments_tab", "Segment detail")
    app.selectbox(key="detail_segment").select("Recent repeat buyers").run()
    assert not app.exception
    assert any(c.value == f"{members:,} members" for c in app.caption)


def test_segment_builder_reports_bad_values(app):
    sign_in(app, "analyst2", demo.demo_password("analyst2"))
    app.switch_page(str(ROOT / "pages/segments.py")).run()
    open_tab(app, "segments_tab", "Build a segment")
    app.radio[0].set_value("JSON with nested groups").run()
    app.text_area[0].input('{"all": [{"field": "order_count", "op": "contains", "value": "x"}]}').run()
    assert not app.exception
    assert any("contains" in e.value for e in app.error)


def test_lifecycle_page_shows_stages_and_the_manual_change_form(app, app_db):
    sign_in(app, "csm1", demo.demo_password("csm1"))
    app.switch_page(str(ROOT / "pages/lifecycle.py")).run()
    assert not app.exception
    with make_engine(app_db).connect() as connection:
        from db.models import CustomerLifecycleStage

        staged = connection.scalar(select(func.count()).select_from(CustomerLifecycleStage))
    assert next(m for m in app.metric if m.label == "Customers staged").value == f"{staged:,}"
    # Stages and headers in words: "At risk", "Customer id", never at_risk or signed_up_at.
    drill = app.selectbox(key="drill_stage")
    assert drill.value == "at_risk" and "At risk" in drill.options and "New customer" in drill.options
    members = app.dataframe[0].value
    assert {"Customer id", "Signed up", "In stage since", "Stage"} <= set(members.columns)
    assert not [c for c in members.columns if "_" in c]
    assert set(members["Stage"]) == {"At risk"}
    assert not members["Reason"].str.startswith("at_risk").any()
    open_tab(app, "lifecycle_tab", "Cohort retention")
    assert not app.exception
    import datetime as dt

    today = dt.date.today()
    in_progress = [c.value for c in app.caption if "so far" in c.value]
    assert in_progress == ([] if (today + dt.timedelta(days=1)).day == 1 else
                           [f"{today:%B %Y} so far (to {today:%d %b}) is left out: each cohort's last cell would "
                            "hold only those days."])
    open_tab(app, "lifecycle_tab", "Changes")
    customer_input = next(n for n in app.number_input if n.label == "Customer id")
    customer_input.set_value(1)
    next(b for b in app.button if b.label == "Change stage").click().run()
    assert any("reason" in e.value.lower() for e in app.error)  # a reason is required


def test_static_list_is_created_and_edited_through_the_page(app):
    sign_in(app, "analyst3", demo.demo_password("analyst3"))
    app.switch_page(str(ROOT / "pages/segments.py")).run()
    open_tab(app, "segments_tab", "Build a segment")
    next(t for t in app.text_input if t.key == "static_name").input("VIP follow-up")
    next(t for t in app.text_area if t.label == "Customer ids").input("1, 2, 3, 3")
    next(b for b in app.button if b.label == "Create list").click().run()
    assert not app.exception
    assert any(s.value == "Created VIP follow-up with 3 customers." for s in app.success)
    open_tab(app, "segments_tab", "Segment detail")
    app.selectbox(key="detail_segment").select("VIP follow-up").run()
    assert next(m for m in app.metric if m.label == "Members").value == "3"
    next(t for t in app.text_input if t.label == "Customer ids").input("2")
    next(b for b in app.button if b.label == "Remove from the list").click().run()
    assert not app.exception
    assert any(s.value == "1 customers removed." for s in app.success)
    app.selectbox(key="detail_segment").select("VIP follow-up").run()
    assert next(m for m in app.metric if m.label == "Members").value == "2"


def test_segments_page_builds_only_the_open_tab_and_keeps_the_others_choices(app):
    """Hidden tabs cost the browser as much as shown ones (a chart or data grid about 0.1 CPU second
    each), so the page builds the open tab only; what was picked in another tab is still there on return."""
    sign_in(app, "analyst1", demo.demo_password("analyst1"))
    app.switch_page(str(ROOT / "pages/segments.py")).run()
    assert not app.exception
    assert [t.label for t in app.tabs] == ["All segments", "Segment detail", "Build a segment", "Compare"]
    assert not app.selectbox and not app.button  # the detail, builder and comparison are not built
    assert len(app.get("plotly_chart")) == 1
    open_tab(app, "segments_tab", "Segment detail")
    names = app.selectbox(key="detail_segment").options
    app.selectbox(key="detail_segment").select(names[-1]).run()
    app.selectbox(key="members_page_size").select(25).run()
    open_tab(app, "segments_tab", "Compare")
    assert not app.exception
    with pytest.raises(KeyError):
        app.selectbox(key="detail_segment")
    open_tab(app, "segments_tab", "Segment detail")
    assert app.selectbox(key="detail_segment").value == names[-1]
    assert app.selectbox(key="members_page_size").value == 25
