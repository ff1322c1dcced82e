"""Shadow reads: the same read sent to the other store, compared off the client's path.

After the client has its answer, a sampled share of reads (``shadow_read_percent``) is
scheduled on a bounded scheduler: when it is full the shadow read is dropped and
counted, never queued without bound. The other store's answer has its ids translated to
legacy's, both answers are normalized and compared, and the comparison goes into the
report. A read compared while a write to its record was pending is in-flight, not a
mismatch. A sampled share also reads the served store twice, to learn which paths differ
between two reads of one store: those are noise for that route.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson

from memshift.compare.compare import Observation, compare, differences
from memshift.compare.diff import DiffOptions, generic
from memshift.compare.normalize import Rule, ignore
from memshift.config.settings import CompareSettings, RouteCompare, StoreName
from memshift.errors import UpstreamError
from memshift.proxy.core import ProxyCore
from memshift.shadow.routes import RouteMatch
from memshift.upstream import OutboundRequest


@dataclass(frozen=True)
class ReadCopy:
    """What a shadow read needs of the client's read, kept after the request is gone."""

    match: RouteMatch
    method: str
    path_qs: str
    body: bytes
    headers: tuple[tuple[str, str], ...]
    fence: str | None
    before: tuple[int, bool]


def _parsed(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return body.decode(errors="replace")


def rules_of(settings: CompareSettings, route: str) -> tuple[list[Rule], DiffOptions]:
    """Return the normalization rules and diff options for ``route``."""
    extra = settings.routes.get(route, RouteCompare())
    tolerance = settings.tolerance if extra.tolerance is None else extra.tolerance
    unordered = frozenset((*settings.unordered, *extra.unordered))
    return [ignore((*settings.ignore, *extra.ignore))], DiffOptions(
        tolerance=tolerance, unordered=unordered
    )


async def _observe(core: ProxyCore, read: ReadCopy, store: StoreName) -> Observation:
    """Read from ``store`` with ids translated both ways; the answer in legacy's ids."""
    target = await core.translator.request(read.match, read.path_qs, read.body, store)
    if target is None:
        return Observation(store, None, None, error="the record has no pair in this store")
    request = OutboundRequest(read.method, target[0], read.headers, target[1])
    try:
        answer = await core.send(store, request, read.match.spec.name, "shadow")
    except UpstreamError as exc:
        return Observation(store, None, None, error="timeout" if exc.timeout else "unreachable")
    body = _parsed(answer.body)
    paths = read.match.spec.response_ids
    translatable = store != "legacy" and paths and isinstance(body, dict | list)
    if translatable and not await core.translator.document(body, paths, store, "legacy"):
        return Observation(
            store,
            answer.status,
            body,
            error="answer names records legacy does not have",
            duration_s=answer.elapsed_s,
        )
    return Observation(store, answer.status, body, duration_s=answer.elapsed_s)


async def shadow_read(
    core: ProxyCore, read: ReadCopy, served: StoreName, status: int, body: bytes
) -> None:
    """Compare the answer the client got from ``served`` with the other store's."""
    settings = core.holder.current.compare
    rules, options = rules_of(settings, read.match.spec.name)
    route = read.match.spec.name
    mine = Observation(served, status, _parsed(body))
    theirs = await _observe(core, read, "new" if served == "legacy" else "legacy")
    if random.random() * 100 < settings.noise_percent:
        again = await _observe(core, read, served)
        if not again.error:
            found = differences(mine, again, rules, options)
            core.report.learn_noise(route, {generic(d.path) for d in found})
    control, candidate = (mine, theirs) if served == "legacy" else (theirs, mine)
    comparison = compare(
        route,
        control,
        candidate,
        rules=rules,
        options=options,
        noise_paths=core.report.noise_paths.get(route, set()),
        inflight=not core.lanes.settled(read.fence, read.before),
    )
    core.report.record(comparison)
    core.compared.record(
        judged=comparison.verdict != "inflight", mismatched=comparison.verdict == "mismatched"
    )
    core.metrics.comparisons.labels(route=route, verdict=comparison.verdict).inc()
