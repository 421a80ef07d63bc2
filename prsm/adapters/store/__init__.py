"""Event store and read views: SQLite (embedded default) and PostgreSQL (clusters)."""
