"""The database: engine, shared metadata, the unit of work and the Alembic migrations."""
