"""Storage: SQLAlchemy 2 tables, repositories, engine and Alembic migrations."""
