"""What the Journeys page reads of the latest journeys run: its facts (when, how many, which
touchpoint sources the shop has), the top paths with conversion and median days, a Sankey of
them, and conversion by first-touch channel, filtered by segment and signup cohort. Every read is
an indexed lookup of at most a few dozen rollup rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core.journeys.steps import CHURNED, NOT_PURCHASED, OTHER_PATHS, PURCHASED, SOURCES, STANDING
from crm_core.platform.actors import Actor
from crm_core.platform.errors import ValidationError
from crm_core.platform.permissions import require
from db.models import JOURNEY_KINDS, CustomerSegment, JourneyRollup, JourneyRun

PATH_KINDS = ("to_purchase", "to_churn")
# The end nodes of each kind of path, the goal first.
END_NODES = {"to_purchase": (PURCHASED, NOT_PURCHASED), "to_churn": (CHURNED, *STANDING)}
# Sources a shop's journeys can do without; sign-ups and orders are always there.
OPTIONAL_SOURCES = ("web_sessions", "communications", "tickets", "lifecycle_changes")


def latest_run(session: Session, viewer: Actor) -> dict[str, Any] | None:
    """The latest run: as-of, customers, buyers, churned, rows per source and the sources it lacked."""
    require(viewer, "journeys.view")
    run = session.scalar(select(JourneyRun).order_by(JourneyRun.computed_at.desc(), JourneyRun.id.desc()).limit(1))
    if run is None:
        return None
    sources = dict(run.sources or {})
    return {"run_id": run.id, "as_of": run.as_of, "computed_at": run.computed_at, "customers": run.customers,
            "buyers": run.buyers, "churned": run.churned, "seconds": run.seconds, "sources": sources,
            "missing": [SOURCES[s] for s in OPTIONAL_SOURCES if not sources.get(s)]}


def filter_options(session: Session, viewer: Actor) -> dict[str, list]:
    """Segments and signup cohorts the latest run has rollups for."""
    require(viewer, "journeys.view")
    run = latest_run(session, viewer)
    if run is None:
        return {"segments": [], "cohorts": []}
    r = JourneyRollup
    segments = session.execute(
        select(CustomerSegment.id, CustomerSegment.name).where(CustomerSegment.id.in_(
            select(r.segment_id).where(r.run_id == run["run_id"], r.kind == "to_purchase", r.segment_id.is_not(None))
            .distinct())).order_by(CustomerSegment.name)).all()
    cohorts = session.scalars(select(r.cohort).where(r.run_id == run["run_id"], r.kind == "to_purchase",
                                                     r.segment_id.is_(None), r.cohort.is_not(None))
                              .distinct().order_by(r.cohort.desc())).all()
    return {"segments": [{"id": s.id, "name": s.name} for s in segments], "cohorts": list(cohorts)}


def _check(kind: str, segment_id: Any, cohort: Any) -> None:
    if kind not in JOURNEY_KINDS:
        raise ValidationError(f"Unknown journey {kind!r}; choose one of {', '.join(JOURNEY_KINDS)}.")
    if segment_id is not None and (isinstance(segment_id, bool) or not isinstance(segment_id, int)):
        raise ValidationError("Choose a segment by its id.")
    if cohort is not None and (not isinstance(cohort, str) or len(cohort) != 7 or cohort[4] != "-"):
        raise ValidationError(f"A signup cohort is a month written YYYY-MM, not {cohort!r}.")


def _rows(session: Session, run_id: int, kind: str, segment_id: int | None, cohort: str | None,
          everyone: bool = False) -> list[JourneyRollup]:
    """The rows of the paths (rank 1 on), or with `everyone` the row of all of them together (rank 0)."""
    r = JourneyRollup
    return list(session.scalars(select(r).where(
        r.run_id == run_id, r.kind == kind,
        r.segment_id.is_(None) if segment_id is None else r.segment_id == segment_id,
        r.cohort.is_(None) if cohort is None else r.cohort == cohort,
        r.rank == 0 if everyone else r.rank > 0).order_by(r.rank)))


def journey_totals(session: Session, viewer: Actor, segment_id: int | None = None,
                   cohort: str | None = None) -> dict[str, dict[str, Any]]:
    """For each kind of path: customers, how many reached the goal and the share, and the median days
    to it. To the first purchase that is from the first-touch channel's touch (first visit or message)
    to the purchase, for buyers with one: the measure of `first_touch_conversion`, over every channel.
    From the first purchase to churn it is from that purchase."""
    require(viewer, "journeys.view")
    _check("to_purchase", segment_id, cohort)
    run = latest_run(session, viewer)

    def everyone(kind: str):
        rows = _rows(session, run["run_id"], kind, segment_id, cohort, everyone=True) if run else []
        return rows[0] if rows else None

    totals: dict[str, dict[str, Any]] = {}
    for kind in PATH_KINDS:
        row = everyone(kind)
        days_row = everyone("first_touch") if kind == "to_purchase" else row
        customers = row.customers if row else 0
        totals[kind] = {"customers": customers, "reached": row.reached if row else 0,
                        "rate": row.reached / customers if row and customers else None,
                        "outcomes": dict(row.outcomes or {}) if row else {},
                        "median_days": days_row.median_days_total if days_row else None}
    return totals


def top_paths(session: Session, viewer: Actor, kind: str = "to_purchase", segment_id: int | None = None,
              cohort: str | None = None) -> list[dict[str, Any]]:
    """The most common paths (most customers first, the rest summed up last): customers, how many
    reached the goal (bought / churned) and the share, the end nodes, and median days between steps."""
    require(viewer, "journeys.view")
    _check(kind, segment_id, cohort)
    if kind not in PATH_KINDS:
        raise ValidationError("Paths are to the first purchase or from it to churn.")
    run = latest_run(session, viewer)
    if run is None:
        return []
    goal = END_NODES[kind][0]
    found = []
    for row in _rows(session, run["run_id"], kind, segment_id, cohort):
        steps = row.path.split(" > ")
        days = list(row.median_days or [])
        between = [f"{a} → {b}: {d:.1f} d" if d is not None else f"{a} → {b}: –"
                   for a, b, d in zip(steps, steps[1:], days, strict=False)] if row.path != OTHER_PATHS else []
        if row.path != OTHER_PATHS and days:
            last = days[-1]
            between.append(f"{steps[-1]} → {goal}: {last:.1f} d" if last is not None else f"{steps[-1]} → {goal}: –")
        found.append({"rank": row.rank, "path": row.path, "steps": row.steps, "customers": row.customers,
                      "reached": row.reached, "rate": row.reached / row.customers if row.customers else None,
                      "outcomes": dict(row.outcomes or {}), "median_days": days,
                      "median_days_total": row.median_days_total, "between": "; ".join(between)})
    return found


def sankey(session: Session, viewer: Actor, kind: str = "to_purchase", segment_id: int | None = None,
           cohort: str | None = None, paths: int = 10) -> dict[str, Any]:
    """Nodes and links of the top `paths` paths, each step a node at its position and the end nodes
    last ("2. Email", then "First purchase"), links weighted by customers."""
    if not isinstance(paths, int) or not 1 <= paths <= 25:
        raise ValidationError("Show between 1 and 25 paths.")
    rows = [r for r in top_paths(session, viewer, kind, segment_id, cohort) if r["path"] != OTHER_PATHS][:paths]
    nodes: list[str] = []
    index: dict[str, int] = {}
    links: dict[tuple[int, int], int] = {}

    def node(label: str) -> int:
        if label not in index:
            index[label] = len(nodes)
            nodes.append(label)
        return index[label]

    for row in rows:
        steps = [f"{i + 1}. {s}" for i, s in enumerate(row["path"].split(" > "))]
        chain = [node(s) for s in steps]
        for a, b in zip(chain, chain[1:], strict=False):
            links[(a, b)] = links.get((a, b), 0) + row["customers"]
        for end, count in row["outcomes"].items():
            links[(chain[-1], node(end))] = links.get((chain[-1], node(end)), 0) + count
    return {"nodes": nodes, "source": [a for a, _ in links], "target": [b for _, b in links],
            "value": list(links.values()), "paths": len(rows)}


def first_touch_conversion(session: Session, viewer: Actor, segment_id: int | None = None,
                           cohort: str | None = None) -> list[dict[str, Any]]:
    """Customers, buyers, conversion and median days from first touch to first purchase, by the
    channel of the first touchpoint (a session's source or a message's channel, else acquisition)."""
    require(viewer, "journeys.view")
    _check("first_touch", segment_id, cohort)
    run = latest_run(session, viewer)
    if run is None:
        return []
    return [{"channel": r.path, "customers": r.customers, "buyers": r.reached,
             "conversion": r.reached / r.customers if r.customers else None,
             "median_days_to_purchase": r.median_days_total}
            for r in _rows(session, run["run_id"], "first_touch", segment_id, cohort)]
