"""Database layer: engine and sessions, typed models, Alembic migrations, demo-data simulator."""
