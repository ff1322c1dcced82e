"""A client request as the request policy sees it, whatever protocol brought it.

A codec (``rest.py``, ``mcp/calls.py``) decodes a client request into a ``Call``: which
route or tool it is, who calls, which records it touches, and how to send it to a
store and answer the client with a store's answer. The policy (``reads.py``,
``writes.py``) decides everything else once for both protocols: which store serves,
fallbacks, shadow sampling and the fence, the write log, keys, identity, mirroring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from memshift.config.settings import RouteSpec, StoreName
from memshift.errors import UpstreamError
from memshift.shadow.mirror import Write
from memshift.shadow.reads import ReadCopy
from memshift.shadow.records import Records


@dataclass(slots=True)
class Reply:
    """A store's answer to a call.

    ``status`` is the store's HTTP status (5xx: the store failed); ``outcome`` and
    ``document`` are the call's own result: the HTTP status and body of a REST answer,
    or a tool result's status and JSON document. ``payload`` is what the codec needs
    to answer the client with it.
    """

    status: int
    outcome: int
    document: bytes
    payload: Any

    @property
    def accepted(self) -> bool:
        """Whether the store took the call (a 2xx outcome)."""
        return 200 <= self.outcome < 300


class Call(Protocol):
    """A client request decoded by its protocol (see the module)."""

    spec: RouteSpec
    rid: str  # the request id both stores see
    answered: tuple[int, bytes] | None  # what the client got: outcome and document

    @property
    def route(self) -> str:
        """The route's or tool's name, as metrics and the report know it."""

    @property
    def sticky(self) -> str:
        """The caller's sticky key: the same caller, the same store."""

    def header(self, name: str) -> str | None:
        """A header of the client's request (its ``Authorization``, to learn its user:
        never kept)."""

    @property
    def client_key(self) -> str | None:
        """The client's ``Idempotency-Key``, if it sent one."""

    def records(self) -> Records:
        """The records the call changes or reads, and those it refers to."""

    def write(self, key: str, user: str) -> Write:
        """The write as the write log keeps it: client-side ids, the user, no token."""

    async def send(self, store: StoreName, purpose: str, key: str | None = None) -> Reply | None:
        """Send the call to ``store`` (its ids translated); None when one has no pair there.

        Raise ``UpstreamError`` when the store gives no answer.
        """

    async def respond(
        self, store: StoreName, reply: Reply, *, translate: bool = True
    ) -> web.StreamResponse | None:
        """The client's answer from ``store``'s; None when its ids cannot be translated."""

    async def serve(
        self, store: StoreName, purpose: str, key: str | None = None
    ) -> web.StreamResponse:
        """Send the call to ``store`` and answer the client with what it says, streamed
        where the protocol allows. Only for a store whose answer needs no translation."""

    def refuse(self, status: int, code: str, message: str, store: StoreName) -> web.StreamResponse:
        """memshift's own error answer, in the protocol's form."""

    def shadow(self, fence: str | None, before: tuple[int, bool], user: str | None) -> ReadCopy:
        """What a shadow read of this call needs, kept after the request is gone."""


def upstream_failure(exc: UpstreamError) -> tuple[int, str, str]:
    """The client's status, error code and message when a store gave no answer.

    Decided here for every protocol; the codec only gives it its form.
    """
    if exc.timeout:
        return 504, "upstream_timeout", f"the {exc.store} store timed out"
    if exc.sent:
        return 502, "upstream_broken", f"the {exc.store} store broke off its answer"
    return 502, "upstream_unavailable", f"the {exc.store} store cannot be reached"
