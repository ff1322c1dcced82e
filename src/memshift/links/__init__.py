"""The store boundary: one link per store, one failure taxonomy (not sent, outcome unknown)."""
