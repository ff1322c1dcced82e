"""The error tree of memshift.

Every error memshift raises on purpose derives from :class:`MemshiftError`::

    MemshiftError
    ├── ConfigError      a setting is missing or invalid (``key`` names it, dotted)
    ├── ApiError         an HTTP API refuses a request (``status``, ``code``)
    ├── UpstreamError    a store could not be reached or answered badly (``store``)
    └── IntegrityError   stored data is not what it should be (``problems``)

This module imports nothing from the package, so any module may import it.
"""

from __future__ import annotations


class MemshiftError(Exception):
    """Root of every error memshift raises on purpose."""


class ConfigError(MemshiftError):
    """A setting is missing or invalid; ``key`` is its dotted name."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


class ApiError(MemshiftError):
    """An API refuses a request: answered as ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class UpstreamError(MemshiftError):
    """A store could not be reached, timed out, or answered with something unusable."""

    def __init__(self, store: str, message: str, *, timeout: bool = False) -> None:
        super().__init__(f"{store}: {message}")
        self.store = store
        self.timeout = timeout


class IntegrityError(MemshiftError):
    """Stored data failed a consistency check; ``problems`` lists each finding."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} integrity problem(s)")
        self.problems = problems


def bad_request(message: str, code: str = "bad_request") -> ApiError:
    """Return a 400 error."""
    return ApiError(400, code, message)


def not_found(message: str = "not found") -> ApiError:
    """Return a 404 error."""
    return ApiError(404, "not_found", message)


def unprocessable(message: str, code: str = "validation_error") -> ApiError:
    """Return a 422 error."""
    return ApiError(422, code, message)
