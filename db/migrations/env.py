import warnings

from alembic import context
from sqlalchemy import event, pool

from db.engine import SQLITE_IMMEDIATE, make_engine
from db.models import Base

config = context.config
target_metadata = Base.metadata
# A batch table copy on SQLite reflects the schema; SQLAlchemy cannot reflect the expression index
# on lower(email) and says so, though the copy never touches that table or its index.
warnings.filterwarnings("ignore", message="Skipped unsupported reflection of expression-based index")


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _foreign_keys_off(dbapi_connection, _record) -> None:
    # SQLite's documented procedure for schema changes: a batch "move and copy" of a table drops
    # the old one, and with foreign keys on that DROP would cascade into every child table.
    dbapi_connection.execute("PRAGMA foreign_keys=OFF")


def run_migrations_online() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        event.listen(engine, "connect", _foreign_keys_off)
    with engine.connect() as connection:
        if sqlite:
            # Take the write lock before reading the version: a second `crm db upgrade` started
            # meanwhile waits (up to the busy timeout), then finds the schema at head, instead of
            # failing at its first write because the first one changed the file since it read it.
            connection = connection.execution_options(**{SQLITE_IMMEDIATE: True})
        # One transaction for the whole upgrade, on SQLite too (Alembic would otherwise commit after
        # each migration, as if SQLite's DDL were not transactional; with the sqlite3 module's own
        # transaction handling off it is). Committing between migrations would let a second
        # upgrade that waited for the lock read the version half-way and run the next migration
        # again beside the first: "duplicate column name".
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True,
            transactional_ddl=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left rows that break foreign keys: {broken[:5]}")
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
