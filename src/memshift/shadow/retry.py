"""The retry policy of mirrored writes, built in one place from ``[mirror]`` settings.

Exponential backoff with jitter; retried are connection errors, timeouts and 5xx
answers (raised as ``Retryable``); a 4xx is an answer, never retried. Every mirrored
write carries its ``Idempotency-Key``, so a retry after a lost answer applies nothing
twice.
"""

from __future__ import annotations

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from memshift.config.settings import MirrorSettings


class Retryable(Exception):
    """A failed attempt worth repeating: no answer, a timeout, or a 5xx."""

    def __init__(self, reason: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.body = body


def retrying(settings: MirrorSettings, attempts: int | None = None) -> AsyncRetrying:
    """Return the retry loop for one mirrored write (``attempts`` overrides the setting)."""
    return AsyncRetrying(
        stop=stop_after_attempt(attempts or settings.retry_attempts),
        wait=wait_exponential_jitter(
            multiplier=settings.retry_initial_s,
            max=settings.retry_max_s,
            jitter=settings.retry_initial_s,
        ),
        retry=retry_if_exception_type(Retryable),
        reraise=True,
    )
