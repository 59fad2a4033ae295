"""Storage: SQLModel tables, engines and sessions, queries, Alembic migrations."""
