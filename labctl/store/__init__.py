"""The state store: SQLAlchemy models and Alembic migrations; SQLite by default, PostgreSQL by URL.

The store is the source of truth for sessions, their events and API tokens; every timer in labctl is a sweep over it.
"""
