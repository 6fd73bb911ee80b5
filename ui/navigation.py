"""The page catalogue: which file, under which section, needs which permission."""

from __future__ import annotations

from dataclasses import dataclass

from crm_core import platform


@dataclass(frozen=True)
class PageSpec:
    path: str
    title: str
    icon: str
    section: str
    permission: str
    url_path: str


PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/overview.py", "Executive overview", ":material/monitoring:", "Insights", "overview.view", "overview"),
    PageSpec("pages/segments.py", "Segments", ":material/groups:", "Insights", "segments.view", "segments"),
    PageSpec("pages/lifecycle.py", "Lifecycle", ":material/timeline:", "Insights", "lifecycle.view", "lifecycle"),
    PageSpec("pages/customer_value.py", "Customer value", ":material/savings:", "Insights", "value.view", "customer-value"),
    PageSpec("pages/forecast.py", "Forecast", ":material/trending_up:", "Insights", "forecast.view", "forecast"),
    PageSpec("pages/churn.py", "Churn", ":material/trending_down:", "Insights", "churn.view", "churn"),
    PageSpec("pages/health.py", "Health", ":material/monitor_heart:", "Insights", "health.view", "health"),
    PageSpec("pages/journeys.py", "Journeys", ":material/route:", "Insights", "journeys.view", "journeys"),
    PageSpec("pages/social.py", "Social", ":material/tag:", "Insights", "social.view", "social"),
    PageSpec("pages/customers.py", "Customers", ":material/person_search:", "Customers", "customers.view", "customers"),
    PageSpec("pages/customer_360.py", "Customer 360", ":material/account_circle:", "Customers", "customers.view", "customer-360"),
    PageSpec("pages/success_workbench.py", "Success workbench", ":material/task_alt:", "Customers", "success.view",
             "success-workbench"),
    PageSpec("pages/import_export.py", "Import / Export", ":material/swap_vert:", "Customers", "customers.export", "import-export"),
    PageSpec("pages/support_queue.py", "Support queue", ":material/support_agent:", "Service", "tickets.view", "support-queue"),
    PageSpec("pages/ticket.py", "Ticket", ":material/confirmation_number:", "Service", "tickets.view", "ticket"),
    PageSpec("pages/sla.py", "SLA", ":material/timer:", "Service", "sla.view", "sla"),
    PageSpec("pages/complaints.py", "Complaints", ":material/report:", "Service", "complaints.view", "complaints"),
    PageSpec("pages/communications.py", "Communications", ":material/forum:", "Service", "communications.view", "communications"),
    PageSpec("pages/loyalty.py", "Loyalty", ":material/loyalty:", "Service", "loyalty.view", "loyalty"),
    PageSpec("pages/risk_reviews.py", "Risk reviews", ":material/gpp_maybe:", "Customers", "risk.view", "risk-reviews"),
    PageSpec("pages/referrals.py", "Referrals", ":material/share:", "Customers", "referrals.view", "referrals"),
    PageSpec("pages/duplicates.py", "Duplicates & merge", ":material/join_inner:", "Customers", "customers.merge", "duplicates"),
    PageSpec("pages/campaigns.py", "Campaigns", ":material/campaign:", "Customers", "campaigns.view", "campaigns"),
    PageSpec("pages/privacy.py", "Privacy requests", ":material/policy:", "Administration", "privacy.manage", "privacy"),
    PageSpec("pages/refresh_runs.py", "Refresh runs", ":material/update:", "Administration", "refresh.run",
             "refresh-runs"),
    PageSpec("pages/admin.py", "Users", ":material/manage_accounts:", "Administration", "users.manage", "users"),
    PageSpec("pages/audit_log.py", "Audit log", ":material/history:", "Administration", "audit.view", "audit"),
    PageSpec("pages/api_tokens.py", "API tokens", ":material/key:", "Account", "tokens.own", "api-tokens"),
)


def pages_for(role: str) -> list[PageSpec]:
    return [page for page in PAGES if platform.allowed(role, page.permission)]


def sections_for(role: str) -> dict[str, list[PageSpec]]:
    sections: dict[str, list[PageSpec]] = {}
    for page in pages_for(role):
        sections.setdefault(page.section, []).append(page)
    return sections
