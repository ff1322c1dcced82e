"""memshift: move a live memory store to a new backend without downtime or lost writes."""

__version__ = "0.1.0"
