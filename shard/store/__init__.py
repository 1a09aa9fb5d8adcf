"""Persistence: API keys and stored completions, through SQLAlchemy (SQLite or PostgreSQL)."""
