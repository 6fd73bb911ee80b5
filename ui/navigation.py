"""The page catalogue: which file, under which section, needs which permission."""

from __future__ import annotations

from dataclasses import dataclass

from crm_core.permissions import allowed


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
    PageSpec("pages/admin.py", "Users", ":material/manage_accounts:", "Administration", "users.manage", "users"),
    PageSpec("pages/audit_log.py", "Audit log", ":material/history:", "Administration", "audit.view", "audit"),
)


def pages_for(role: str) -> list[PageSpec]:
    return [page for page in PAGES if allowed(role, page.permission)]


def sections_for(role: str) -> dict[str, list[PageSpec]]:
    sections: dict[str, list[PageSpec]] = {}
    for page in pages_for(role):
        sections.setdefault(page.section, []).append(page)
    return sections
