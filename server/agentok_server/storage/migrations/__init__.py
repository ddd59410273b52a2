"""Alembic migrations of the agentok schema (SQLite and PostgreSQL); run them with `agentok db upgrade`."""
