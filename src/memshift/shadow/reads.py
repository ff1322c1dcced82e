"""A shadow read's work: the same read sent to the other store, both answers diffed.

``observe`` is what the shadow helper process (``shadow/helper.py``) or the proxy
itself runs off the client's path: the other store's answer has its ids translated to
legacy's, both answers are normalized and diffed. A sampled share also reads the
served store twice, to learn which paths differ between two reads of one store: those
are noise for that route. What it finds (``Shadowed``) goes back to the proxy, which
alone knows the noise learned so far and its records' lanes, and judges it
(``proxy/shadows.py``).

This module needs a way to reach the stores (``Sender``), the translator and the
comparison code: nothing of the proxy.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from memshift import jsonpath
from memshift.compare.compare import NO_PAIR, UNPAIRED_ANSWER, Observation, differences
from memshift.compare.diff import Difference, DiffOptions, Ranked, generic
from memshift.compare.normalize import Rule, ignore
from memshift.config.settings import CompareSettings, RouteCompare, StoreName
from memshift.control.callers import CALLER
from memshift.errors import UpstreamError
from memshift.links.wire import OutboundRequest, UpstreamResponse
from memshift.shadow.routes import RouteMatch
from memshift.shadow.translate import Translator


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
    user: str | None = None  # the caller, when known (never a token): for the report
    caller: str = field(default_factory=CALLER.get)  # who it counts for (control/callers.py)


def _parsed(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return body.decode(errors="replace")


def rules_of(settings: CompareSettings, route: str) -> tuple[tuple[Rule, ...], DiffOptions]:
    """Return the normalization rules and diff options for ``route``.

    Made once per settings and route (a reload brings new settings): every shadow read
    needs them.
    """
    key = (id(settings), route)
    cached = _RULES.get(key)
    if cached is not None and cached[0] is settings:
        return cached[1]
    extra = settings.routes.get(route, RouteCompare())
    tolerance = settings.tolerance if extra.tolerance is None else extra.tolerance
    unordered = frozenset((*settings.unordered, *extra.unordered))
    made = (
        (ignore((*settings.ignore, *extra.ignore)),),
        DiffOptions(
            tolerance=tolerance,
            unordered=unordered,
            keys=extra.keys,
            ranked=tuple(
                Ranked(path, top=extra.ranked_top, tolerance=extra.score_tolerance)
                for path in extra.ranked
            ),
        ),
    )
    if len(_RULES) >= _RULES_KEPT:
        _RULES.clear()
    _RULES[key] = (settings, made)
    return made


_RULES: dict[tuple[int, str], tuple[CompareSettings, tuple[tuple[Rule, ...], DiffOptions]]] = {}
_RULES_KEPT = 256


class Sender(Protocol):
    """How a shadow read reaches a store: ``StoreLinks.send``, the proxy's or the helper's."""

    async def __call__(
        self, store: StoreName, request: OutboundRequest, route: str, purpose: str
    ) -> UpstreamResponse: ...


@dataclass(frozen=True)
class Shadowed:
    """What a shadow read found, before the proxy judges it (known noise, the fence).

    The observations come without their bodies: only the differences are kept.

    ``noise`` holds the paths that differed between two reads of the served store,
    when this read was one sampled to learn noise. ``unpaired``: legacy's answer names
    records that have no pair on new yet (not copied there yet).
    """

    route: str
    control: Observation
    candidate: Observation
    found: tuple[Difference, ...]
    noise: frozenset[str] | None = None
    unpaired: bool = False

    def packed(self) -> tuple[Any, ...]:
        """Plain tuples, for the helper to send: pickled several times faster than
        dataclasses, and a message per read is paid on the proxy's event loop."""
        return (
            self.route,
            _packed(self.control),
            _packed(self.candidate),
            tuple((d.path, d.kind, d.control, d.candidate) for d in self.found),
            self.noise,
            self.unpaired,
        )

    @classmethod
    def unpacked(cls, packed: tuple[Any, ...]) -> Shadowed:
        """The ``Shadowed`` that ``packed`` gave."""
        route, control, candidate, found, noise, unpaired = packed
        return cls(
            route,
            _observation(control),
            _observation(candidate),
            tuple(Difference(*d) for d in found),
            noise,
            unpaired,
        )


_PackedObservation = tuple[str, int | None, str | None, float]


def _packed(o: Observation) -> _PackedObservation:
    return (o.store, o.status, o.error, o.duration_s)


def _observation(packed: _PackedObservation) -> Observation:
    store, status, error, duration_s = packed
    return Observation(store, status, None, error, duration_s)


def _bodiless(o: Observation) -> Observation:
    return _observation(_packed(o))


async def _observe(
    translator: Translator, send: Sender, read: ReadCopy, store: StoreName
) -> Observation:
    """Read from ``store`` with ids translated both ways; the answer in legacy's ids."""
    target = await translator.request(read.match, read.path_qs, read.body, store)
    if target is None:
        return Observation(store, None, None, error=NO_PAIR)
    request = OutboundRequest(read.method, target[0], read.headers, target[1])
    try:
        answer = await send(store, request, read.match.spec.name, "shadow")
    except UpstreamError as exc:
        return Observation(store, None, None, error="timeout" if exc.timeout else "unreachable")
    body = _parsed(answer.body)
    paths = read.match.spec.response_ids
    translatable = store != "legacy" and paths and isinstance(body, dict | list)
    if translatable and not await translator.document(body, paths, store, "legacy"):
        return Observation(
            store, answer.status, body, error=UNPAIRED_ANSWER, duration_s=answer.elapsed_s
        )
    return Observation(store, answer.status, body, duration_s=answer.elapsed_s)


async def observe(
    translator: Translator,
    send: Sender,
    settings: CompareSettings,
    read: ReadCopy,
    served: StoreName,
    status: int,
    body: bytes,
) -> Shadowed:
    """Read the other store and diff its answer with the one the client got from ``served``."""
    route = read.match.spec.name
    rules, options = rules_of(settings, route)
    mine = Observation(served, status, _parsed(body))
    theirs = await _observe(translator, send, read, "new" if served == "legacy" else "legacy")
    noise: frozenset[str] | None = None
    if random.random() * 100 < settings.noise_percent:
        again = await _observe(translator, send, read, served)
        if not again.error:
            noise = frozenset(generic(d.path) for d in differences(mine, again, rules, options))
    control, candidate = (mine, theirs) if served == "legacy" else (theirs, mine)
    found = differences(control, candidate, rules, options)
    unpaired = bool(found) and await _unpaired(translator, read.match, control)
    # The report keeps differences, never whole answers: the bodies stay here.
    return Shadowed(route, _bodiless(control), _bodiless(candidate), tuple(found), noise, unpaired)


async def _unpaired(translator: Translator, match: RouteMatch, control: Observation) -> bool:
    """Whether legacy's answer names records of store-given ids with no pair on new yet:
    records new does not hold yet, whose absence there is no difference."""
    if control.error or not isinstance(control.body, dict | list):
        return False
    forms = translator.forms()
    wanted: dict[str, set[Any]] = {}
    for path, kind in match.spec.response_ids:
        if forms.natural(kind):
            continue
        for value in jsonpath.values(control.body, path):
            found = forms.canonical(kind, value)
            if found is not None:
                wanted.setdefault(kind, set()).add(found)
    for kind, ids in wanted.items():
        if len(await translator.idmap.translate(kind, ids, "legacy", "new")) < len(ids):
            return True
    return False
