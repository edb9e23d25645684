"""SQL: engines and sessions for SQLite and PostgreSQL (`db`), the ORM rows (`models`), the
Alembic migrations (`migrations/`) and SQLite's WAL checkpointer (`wal`)."""
