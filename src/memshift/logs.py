"""structlog set-up shared by every memshift process.

One JSON line per event (or a readable line on a terminal), context bound per request
(``bind``, ``bound``: one context variable, cheap enough for every request), and a
processor that masks anything that looks like a secret, so that a token can never
reach a log line even if a caller binds it by mistake.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextvars import ContextVar, Token
from typing import Any

import orjson
import structlog

SECRET_KEYS = frozenset(
    {"authorization", "token", "admin_token", "password", "secret", "api_key", "tokens"}
)


# Never mutated: ``bind`` sets a new mapping, so tasks spawned meanwhile keep theirs.
_BOUND: ContextVar[dict[str, Any] | None] = ContextVar("memshift_log_context", default=None)
Bound = Token[dict[str, Any] | None]


def bind(**values: Any) -> Bound:
    """Add ``values`` to every event logged in this context until ``unbind``."""
    current = _BOUND.get()
    return _BOUND.set({**current, **values} if current else values)


def unbound() -> None:
    """Drop the bound context in this task (a background task started from a request)."""
    _BOUND.set(None)


def unbind(token: Bound) -> None:
    """Undo the ``bind`` that returned ``token``."""
    _BOUND.reset(token)


@contextlib.contextmanager
def bound(**values: Any) -> Iterator[None]:
    """``bind`` for the length of a ``with`` block."""
    token = bind(**values)
    try:
        yield
    finally:
        unbind(token)


def merge_bound(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add the context bound with ``bind`` (an event's own keys win)."""
    values = _BOUND.get()
    if values:
        for key, value in values.items():
            event.setdefault(key, value)
    return event


def redact_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask the value of every key that names a secret."""
    for key in event:
        if key.lower() in SECRET_KEYS:
            event[key] = "***"
    return event


class StderrLogger:
    """Writes each rendered line to whatever ``sys.stderr`` is at the time of writing.

    Cached loggers keep their logger object for the life of the process; looking the
    stream up on each write keeps them right when ``sys.stderr`` is replaced.
    """

    def msg(self, message: str) -> None:
        stream = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg


class _FromLogging(logging.Handler):
    """Carries the standard library's log records (aiohttp's, asyncio's) into structlog.

    A library's record becomes one event named after its logger, in memshift's format.
    Its text and traceback go with it, except for the HTTP layer's (``aiohttp.*``):
    those quote what a client sent, an ``Authorization`` header included, so only
    the exception's type is kept.
    """

    def emit(self, record: logging.LogRecord) -> None:
        fields: dict[str, Any] = {"logger": record.name}
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            fields["error"] = type(exc).__name__
        if record.name.split(".")[0] != "aiohttp":
            fields["message"] = record.getMessage()
            if record.exc_info:
                fields["exc_info"] = record.exc_info
        logger = structlog.get_logger(record.name)
        logger.log(record.levelno, "library_log", **fields)


def _stderr_logger(*_args: Any) -> StderrLogger:
    return StderrLogger()


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


_configured = ("info", True)


def configured() -> tuple[str, bool]:
    """The level and the JSON choice this process's logs were configured with."""
    return _configured


def configure(*, level: str = "info", json: bool | None = None) -> None:
    """Configure structlog for this process; ``json=None`` picks JSON unless on a terminal."""
    global _configured
    as_json = (not sys.stderr.isatty()) if json is None else json
    _configured = (level, as_json)
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            merge_bound,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    if not any(isinstance(h, _FromLogging) for h in root.handlers):
        root.addHandler(_FromLogging())
    root.setLevel(logging.WARNING)
