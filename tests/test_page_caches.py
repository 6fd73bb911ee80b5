"""Timed page caches serve what they hold while they read it again.

A figure cached with a time limit (`st.cache_data(ttl=...)`) used to be recomputed by the first
visitor after the limit, inside that visitor's click: under 20 sessions those recomputes were the
slowest server runs of three pages (bench/concurrency_bench.py --slowest). With
`refresh_mode="background"` Streamlit hands out the expired figures at once and reads them again
on a thread of its own, which has no script context: so the cached functions must not need one.
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path

from sqlalchemy import text

from db.engine import make_engine

ROOT = Path(__file__).resolve().parent.parent
# Below this many seconds a cache is a short debounce (the data version), cheaper to read than to hand off.
DEBOUNCE_SECONDS = 5


def _timed_caches() -> list[tuple[str, float, str | None]]:
    found = []
    for path in [*sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "ui").glob("*.py")), ROOT / "streamlit_app.py"]:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not (isinstance(node, ast.Call) and ast.unparse(node.func) == "st.cache_data"):
                continue
            options = {k.arg: k.value for k in node.keywords}
            if "ttl" in options:
                mode = options.get("refresh_mode")
                found.append((f"{path.name}:{node.lineno}", ast.literal_eval(options["ttl"]),
                              ast.literal_eval(mode) if mode is not None else None))
    return found


def test_every_timed_cache_refreshes_in_the_background():
    caches = _timed_caches()
    assert len(caches) >= 10  # the pages' dashboards, the data date, the shared read cache
    waiting = [where for where, ttl, mode in caches if ttl > DEBOUNCE_SECONDS and mode != "background"]
    assert waiting == [], f"these caches make a visitor wait for the recompute: {waiting}"


def test_cached_reads_work_off_the_script_thread(app_db, monkeypatch):
    """What the background refresh does: the shared read cache's function, called from a thread
    with no Streamlit script context, opens its own unit of work and returns the figures."""
    monkeypatch.setenv("CRM_DATABASE_URL", app_db)
    from ui import context

    def customers_count(session, viewer):
        return session.execute(text("SELECT COUNT(*) FROM customers")).scalar_one()

    results: list = []
    worker = threading.Thread(target=lambda: results.append(
        context._cached_call.__wrapped__(app_db, "v", "admin", "count", (), (), _fn=customers_count, _viewer=None)))
    worker.start()
    worker.join(timeout=30)
    # The shared demo database: other page tests of this worker may have added customers to it.
    engine = make_engine(app_db)
    with engine.connect() as connection:
        assert results == [connection.execute(text("SELECT COUNT(*) FROM customers")).scalar_one()]
    engine.dispose()
    assert results[0] >= 500
