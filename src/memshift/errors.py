"""The error tree of memshift.

Every error memshift raises on purpose derives from :class:`MemshiftError`::

    MemshiftError
    ├── ConfigError          a setting is missing or invalid (``key`` names it, dotted)
    ├── ApiError             an HTTP API refuses a request (``status``, ``code``)
    ├── UpstreamError        a store gave no usable answer (``store``, ``timeout``)
    │   ├── NotSent          the request certainly never reached the store
    │   └── OutcomeUnknown   it may have reached the store and been applied
    └── IntegrityError       stored data is not what it should be (``problems``)

``NotSent`` and ``OutcomeUnknown`` are the distinction a proxy that must lose nothing
acts on: a write that was not sent is forgotten or sent again freely; one whose
outcome is unknown is kept and resolved later under its key, never assumed either way.

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
    """An API refuses a request: answered as ``{"error": {"code", "message"}}``.

    ``close``: the connection cannot serve another request (its body was not read to
    the end): the answer says ``Connection: close``.
    """

    def __init__(self, status: int, code: str, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.close = close


class UpstreamError(MemshiftError):
    """A store gave no usable answer; see ``NotSent`` and ``OutcomeUnknown``.

    ``timeout``: the store was too slow (to accept the connection, or to answer).
    """

    sent = True  # whether the request may have reached the store

    def __init__(self, store: str, message: str, *, timeout: bool = False) -> None:
        super().__init__(f"{store}: {message}")
        self.store = store
        self.message = message
        self.timeout = timeout


class NotSent(UpstreamError):
    """The request never reached the store: refused or timed-out connect, a stale link."""

    sent = False


class OutcomeUnknown(UpstreamError):
    """The request was sent, and no whole answer came: it may have been applied.

    A connection lost mid-answer, a store silent past the read timeout, an answer
    that could not be parsed.
    """


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
