"""Backfill and verify: the records dual writes do not cover, and proof both stores agree."""
