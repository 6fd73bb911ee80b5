"""The one migration chain builds, tears down and rebuilds the schema on both backends."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from db import migrate
from db.engine import make_engine
from db.models import Base


def test_upgrade_downgrade_upgrade(fresh_database_url):
    url = fresh_database_url
    migrate.upgrade(url)
    engine = make_engine(url)
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert migrate.current_revision(engine) == migrate.head_revision(url)

    migrate.downgrade(url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}

    migrate.upgrade(url)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


@pytest.mark.filterwarnings("ignore:.*expression-based index:UserWarning")
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection")
def test_migrations_match_the_models(fresh_database_url):
    """No drift: autogenerate finds nothing to add or drop after upgrading to head."""
    migrate.upgrade(fresh_database_url)
    engine = make_engine(fresh_database_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    structural = [d for d in diff if d[0] in {"add_table", "remove_table", "add_column", "remove_column"}]
    assert structural == []


def test_sqlite_file_uses_wal_and_foreign_keys(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'nested' / 'crm.sqlite'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert (tmp_path / "nested" / "crm.sqlite").exists()


def test_ensure_migrated_is_idempotent(fresh_database_url):
    migrate.ensure_migrated(fresh_database_url)
    migrate.ensure_migrated(fresh_database_url)
    engine = make_engine(fresh_database_url)
    assert migrate.current_revision(engine) == migrate.head_revision(fresh_database_url)
    engine.dispose()
