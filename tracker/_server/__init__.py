"""The tracker server: an aiohttp application over a storage backend (SQLite, PostgreSQL)."""
