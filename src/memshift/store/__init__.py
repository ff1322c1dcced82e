"""The reference memory store: the service memshift migrates, with two engines.

``legacy`` keeps content as plain text; ``new`` compresses, chunks and deduplicates it.
Both serve the same REST API (``api``) with identical JSON, on SQLite or PostgreSQL.
"""
