"""The retry policy of mirrored writes, built in one place from ``[mirror]`` settings.

Exponential backoff with jitter; retried are writes never sent, 5xx answers, and
writes whose answer was lost where they may be sent again (raised as ``Retryable``):
under an ``Idempotency-Key`` the store honours, or a write that does the same when
applied twice. A lost answer from a store that must not get a write twice is
``Unsure``: never retried. A 4xx is an answer, never retried.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from memshift.config.settings import MirrorSettings


class Retryable(Exception):
    """A failed attempt worth repeating: not sent, a 5xx, or (where the write may be
    sent again) no answer."""

    def __init__(self, reason: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.body = body


class Unsure(Exception):
    """The write was sent and its outcome is unknown, on a store that must not get it
    twice: it is not tried again."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _backoff(settings: MirrorSettings) -> wait_exponential_jitter:
    return wait_exponential_jitter(
        multiplier=settings.retry_initial_s,
        max=settings.retry_max_s,
        jitter=settings.retry_initial_s,
    )


@dataclass(frozen=True)
class _Attempt:
    attempt_number: int


class _AfterFirst:
    """``wait``'s waits for a loop whose first attempt was made before the loop began."""

    def __init__(self, wait: wait_exponential_jitter) -> None:
        self.wait = wait

    def __call__(self, state: RetryCallState) -> float:
        return self.wait(_Attempt(state.attempt_number + 1))  # type: ignore[arg-type]


def first_wait(settings: MirrorSettings) -> float:
    """The wait after a failed first attempt."""
    return _backoff(settings)(_Attempt(1))  # type: ignore[arg-type]


def retrying(
    settings: MirrorSettings, attempts: int | None = None, *, after_first: bool = False
) -> AsyncRetrying:
    """Return the retry loop for one mirrored write (``attempts`` overrides the setting).

    Most writes succeed at once, and the loop's machinery costs as much as the rest of
    the mirroring: a caller may make the first attempt itself and, only when it fails,
    wait :func:`first_wait` and run the remaining attempts in this loop
    (``after_first``), with the same waits as one loop would have.
    """
    total = attempts or settings.retry_attempts
    wait = _backoff(settings)
    return AsyncRetrying(
        stop=stop_after_attempt(total - 1 if after_first else total),
        wait=_AfterFirst(wait) if after_first else wait,
        retry=retry_if_exception_type(Retryable),
        reraise=True,
    )
