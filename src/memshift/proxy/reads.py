"""The read path, once for every protocol: ramp, stickiness, fallback, shadow sampling.

A read goes to the store the ramp gives its caller: the caller's sticky key hashes
to a bucket, and buckets below ``read_percent`` are the new store's. A read meant for
the new store falls back to legacy when an id in it has no pair in new
(``unmapped_request``), when new cannot be reached or fails with a 5xx
(``new_unavailable``, ``new_error``), or when its answer names a record legacy has no
pair for (``unmapped_answer``); each fallback is counted by reason.

A sampled share of reads is shadow-compared once the client has its answer (handed
to the comparison after the answer is written, so none of it adds to the client's
latency): the fence (whether a write to the record was pending) is looked at before
the read, so a comparison that races a write is judged in-flight rather than
mismatched.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from memshift.config.settings import Settings, StoreName
from memshift.control.plane import ControlPlane
from memshift.control.ramp import reads_from_new
from memshift.errors import UpstreamError
from memshift.proxy.call import Call
from memshift.proxy.identity import Identity
from memshift.proxy.metrics import ProxyMetrics
from memshift.proxy.shadows import ShadowReads
from memshift.runtime import ServingLoop
from memshift.shadow.lanes import Lanes


def _fence(call: Call) -> str | None:
    """The record whose pending writes make a comparison of this read in-flight (None:
    any record's, for a read of many)."""
    keys = call.records().keys
    return keys[0] if len(keys) == 1 else None


class ReadPath:
    """Reads of every protocol: served by the store the ramp gives, compared in the shadow."""

    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        plane: ControlPlane,
        lanes: Lanes,
        shadows: ShadowReads,
        metrics: ProxyMetrics,
        identity: Identity,
    ) -> None:
        self.settings = settings
        self.plane = plane
        self.lanes = lanes
        self.shadows = shadows
        self.metrics = metrics
        self.identity = identity
        self._loop = ServingLoop()

    async def read(self, call: Call) -> web.StreamResponse:
        """Serve one read; schedule its shadow comparison once the answer is ready."""
        sampled = self.shadows.sampled()
        fence = _fence(call) if sampled else None
        before = self.lanes.snapshot(fence) if sampled else (0, False)
        served: StoreName = "legacy"
        response = None
        if reads_from_new(call.sticky, self.plane.state.read_percent):
            response = await self._from_new(call)
            if response is not None:
                served = "new"
        if response is None:
            response = await call.serve("legacy", "read")
        if sampled and call.answered is not None:
            # Once the client has its answer: returning it writes it in this turn of
            # the loop, and a callback queued now runs in the next.
            self._loop().call_soon(self._shadow, call, fence, before, served)
        return response

    def _shadow(
        self, call: Call, fence: str | None, before: tuple[int, bool], served: StoreName
    ) -> None:
        """Hand a read the client has its answer to to the shadow comparison."""
        assert call.answered is not None
        try:
            user = self.identity.known(call.header, self.plane.state.primary)
            self.shadows.schedule(call.shadow(fence, before, user), served, *call.answered)
        except Exception as exc:  # never the client's: it has its answer already
            self.shadows.failed(call.route, exc)

    async def _from_new(self, call: Call) -> web.StreamResponse | None:
        """The new store's answer; None (counted by reason) when legacy must serve."""
        try:
            reply = await call.send("new", "read")
        except UpstreamError:
            reason = "new_unavailable"
        else:
            if reply is None:
                reason = "unmapped_request"
            elif reply.status >= 500:
                reason = "new_error"
            else:
                response = await call.respond("new", reply)
                if response is not None:
                    return response
                reason = "unmapped_answer"
        self.metrics.read_fallbacks.labels(reason).inc()
        return None
