"""Random histories of two users through the proxy, with faults, leave both stores equal.

Each example builds a world of its own: a legacy and a new reference store (new seeded
with records of its own, so its ids differ from legacy's), each behind a front that can
stop listening, refuse with 503, lose a request or cut an answer after the store applied
it, and the proxy before them on a SQLite state db: real servers on port 0, files in a
temporary folder. The proxy's write mode (sync, async) and read percent (0, 100) are
drawn, then a list of steps: two users creating, patching and deleting memories and
contexts, relating memories and deleting relations, reading (a record, a list, a search,
a memory's relations), writing to each other's records by plain and zero-padded ids and
to ids nobody has; and faults: new down for a while (connections refused, kept ones
dropped), new answering 503, new's answer cut after it applied the write, legacy's
answer cut or the request lost (the client gets 502) or refused (503), the proxy closed
and built again on its state db and config, and settling points (faults healed, backlog
drained, everything below checked).

A model (what each user made, and its last acknowledged title) predicts every answer
legacy serves; a read new serves may lag, but names only legacy's ids, and only records
its user may see. After the steps the faults are healed and the backlog drains; then:

1. both stores hold the same records, new's ids translated by the id map;
2. every write acknowledged (2xx) is on both stores, a create exactly once; a create
   answered 502 is there at most once, on both stores or on neither, one answered 503
   on neither; a PATCH answered 502 leaves either title, nothing else;
3. nothing changed that its user could not change: another user's PATCH or DELETE is
   refused (404, or 403 for a public record) and the record stays as its owner left it.

Two faults the runs found are fixed and kept as regression tests (the histories below):
a write lost on its way to legacy was sent there again after the writes that followed
it, and the store showed every relation to a user who could see one.

Sizes: the default run plays the found histories and the cross-user one (a few
seconds). With ``-m slow`` (as ``.ci/run`` does), 12 examples of 20 to 60 steps,
derandomized so CI sees the same ones every time, and ``MEMSHIFT_PROPERTY_EXAMPLES``
(default 16) random examples of 20 to 80 steps, about 1 s each (sized for the CI's
time limit); an operator's longer run:

    MEMSHIFT_PROPERTY_EXAMPLES=1000 .venv/bin/python -m pytest -m slow \
        tests/proxy/test_properties.py -p no:cacheprovider --hypothesis-show-statistics
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st

from memshift.config.load import parse_settings
from memshift.proxy.app import make_apps
from memshift.proxy.instance import make_proxy as new_proxy
from memshift.store.app import make_app
from memshift.store.settings import ENGINES, StoreSettings
from tests.faults import CUTS, LOSE, REFUSE, Cut, CuttingFront
from tests.proxy.conftest import SERVICE, TOKENS, Stack, auth, proxy_doc, seed_new_store, toml_of
from tests.proxy.test_workload import assert_stores_match, drained, dump

Client = TestClient[Any, Any]
Kind = Literal["memory", "context", "relation"]
USERS = ("user1", "user2")
NOBODY = "nobody"  # the owner of ids no store has
GHOST_BASE = 900_000
PATHS: dict[str, str] = {
    "memory": "/v1/memories",
    "context": "/v1/contexts",
    "relation": "/v1/relations",
}
SECTIONS: dict[str, dict[str, Any]] = {
    "mirror": {
        "retry_attempts": 2,
        "retry_initial_s": 0.01,
        "retry_max_s": 0.05,
        "replay_interval_s": 0.2,
    },
    # Faults on new would rightly trip failback; these histories are about the data.
    "rollback": {"max_error_rate": 1.0, "max_mismatch_rate": 1.0, "max_latency_ratio": 1000},
}
SLOW_EXAMPLES = int(os.environ.get("MEMSHIFT_PROPERTY_EXAMPLES", "16"))


# Steps. A step names records by reference: ``Ref(owner, n)`` is the owner's n-th record
# of the kind (modulo how many it has), ``Ref("nobody", n)`` an id no store has.


@dataclass(frozen=True)
class Ref:
    owner: str
    n: int = 0
    padded: bool = False  # the id spelled with leading zeros, 19 digits


@dataclass(frozen=True)
class Create:
    user: str
    kind: Kind
    public: bool = False
    refs: tuple[Ref, ...] = ()  # memory: its context (none: no context); relation: both ends


@dataclass(frozen=True)
class Patch:
    user: str
    kind: Literal["memory", "context"]
    ref: Ref


@dataclass(frozen=True)
class Delete:
    user: str
    kind: Kind
    ref: Ref


ReadWhat = Literal["memory", "list", "search", "relations", "context"]
READS: tuple[ReadWhat, ...] = ("memory", "list", "search", "relations", "context")


@dataclass(frozen=True)
class Read:
    user: str
    what: ReadWhat
    ref: Ref


FaultName = Literal[
    "new_down",
    "new_up",
    "new_refuse",
    "new_cut",
    "legacy_cut",
    "legacy_lose",
    "legacy_refuse",
    "restart",
    "settle",
]


@dataclass(frozen=True)
class Fault:
    what: FaultName
    how: Cut = "mid_body"  # for the cuts


Step = Create | Patch | Delete | Read | Fault

FAULTS: tuple[FaultName, ...] = get_args(FaultName)


def _refs(user: str) -> st.SearchStrategy[Ref]:
    """A reference from ``user``'s side: mostly their own records, often the other
    user's, now and then an id nobody has."""
    other = next(u for u in USERS if u != user)
    return st.builds(
        Ref,
        owner=st.sampled_from((user, user, other, NOBODY)),
        n=st.integers(0, 4),
        padded=st.booleans(),
    )


@st.composite
def _step(draw: st.DrawFn) -> Step:
    user = draw(st.sampled_from(USERS))
    refs = _refs(user)
    choice = draw(st.integers(0, 11))
    if choice < 2:
        return Create(user, "memory", draw(st.booleans()))
    if choice < 3:
        return Create(user, "memory", draw(st.booleans()), (draw(refs),))
    if choice < 4:
        if draw(st.booleans()):
            return Create(user, "context", draw(st.booleans()))
        return Create(user, "relation", refs=(draw(refs), draw(refs)))
    if choice < 6:
        return Patch(user, draw(st.sampled_from(("memory", "memory", "context"))), draw(refs))
    if choice < 7:
        return Delete(user, draw(st.sampled_from(("memory", "context", "relation"))), draw(refs))
    if choice < 9:
        return Read(user, draw(st.sampled_from(READS)), draw(refs))
    fault = draw(st.sampled_from(FAULTS))
    return Fault(fault, draw(st.sampled_from(CUTS))) if fault.endswith("_cut") else Fault(fault)


STEP = _step()
WRITE_MODES = st.sampled_from(("sync", "async"))
READ_PERCENTS = st.sampled_from((0, 100))


# The model: what legacy holds, as far as the answers tell.


@dataclass
class Rec:
    """One record a user made: what it may be now (one value once sure) and ever was."""

    kind: Kind
    id: int
    owner: str
    public: bool
    title: str  # memory: title; context: description; relation: name
    tag: str = ""  # memory: the one word only its content holds
    context: int | None = None
    ends: tuple[int, int] = (0, 0)  # relation: source and target memory
    titles: set[str] = field(default_factory=set)  # what it may be titled now
    alive: set[bool] = field(default_factory=lambda: {True})  # whether it may exist now
    history: set[str] = field(default_factory=set)  # every title it may ever have had

    def __post_init__(self) -> None:
        self.titles = {self.title}
        self.history = {self.title}


@dataclass(frozen=True)
class Unsure:
    """A create whose answer was lost (502) or refused (503): found by its title later."""

    kind: Kind
    owner: str
    title: str
    public: bool
    tag: str = ""
    context: int | None = None
    ends: tuple[int, int] = (0, 0)


@dataclass
class Model:
    """Every record the answers told of, by kind and legacy id, and by owner in order."""

    recs: dict[tuple[str, int], Rec] = field(default_factory=dict)
    made: dict[tuple[str, str], list[Rec]] = field(default_factory=dict)
    lost: list[Unsure] = field(default_factory=list)  # answered 502: at most once
    refused: list[Unsure] = field(default_factory=list)  # answered 503: never

    def add(self, rec: Rec) -> None:
        self.recs[rec.kind, rec.id] = rec
        self.made.setdefault((rec.owner, rec.kind), []).append(rec)

    def of(self, kind: str) -> list[Rec]:
        return [r for (k, _), r in self.recs.items() if k == kind]

    def visible(self, rec: Rec, user: str) -> bool:
        if rec.kind != "relation":
            return rec.owner == user or rec.public
        return all(self.visible(self.recs["memory", end], user) for end in rec.ends)


def _seen(what: str) -> None:
    """Count what a history met (shown by ``--hypothesis-show-statistics``)."""
    if currently_in_test_context():
        event(what)


def _read(rec: Rec | None, user: str, model: Model) -> set[int]:
    """The statuses legacy may answer a read of ``rec`` with."""
    if rec is None:
        return {404}
    return {200 if alive and model.visible(rec, user) else 404 for alive in rec.alive}


def _change(rec: Rec | None, user: str, model: Model, ok: set[int]) -> set[int]:
    """The statuses legacy may answer a PATCH or DELETE of ``rec`` by ``user`` with."""
    if rec is None:
        return {404}
    out: set[int] = set()
    for alive in rec.alive:
        if not alive or not model.visible(rec, user):
            out.add(404)
        elif rec.owner != user:
            out.add(403)
        else:
            out |= ok
    return out


class Front(CuttingFront):
    """A store's front whose faults the steps set: down (new connections refused, kept
    ones dropped), or faults for the next writes that reach it."""

    def __init__(self, target: str) -> None:
        super().__init__(target, self._pick)
        self.down = False
        self.next_writes: list[Cut | Literal["refuse", "lose"]] = []

    def _pick(self, method: str, _path: str) -> Cut | Literal["refuse", "lose"] | None:
        if self.down:
            return LOSE
        if method != "GET" and self.next_writes:
            return self.next_writes.pop(0)
        return None

    def stop_listening(self) -> None:
        self.down = True
        super().stop_listening()

    async def heal(self) -> None:
        self.next_writes.clear()
        if self.down:
            await self.listen()
            self.down = False


class World:
    """Two stores behind their fronts and the proxy; the model and the checks."""

    def __init__(self, folder: Path, write_mode: str, read_percent: int) -> None:
        self.folder = folder
        self.routing = {"write_mode": write_mode, "read_percent": read_percent}
        self.model = Model()
        self.serial = itertools.count(1)
        self.stores: dict[str, Client] = {}
        self.fronts: dict[str, Front] = {}
        self.clients: list[Client] = []
        self.stack: Stack | None = None
        self.legacy_armed = False
        self.log: list[str] = []

    async def start(self) -> None:
        for name in ENGINES:
            settings = StoreSettings(engine=name, db_url=f"sqlite:///{self.folder}/{name}.db")
            self.stores[name] = await self._client(make_app(settings, TOKENS))
            self.fronts[name] = Front(str(self.stores[name].make_url("")).rstrip("/"))
        await seed_new_store(self.stores["new"], 3)
        self.urls = {name: await front.start() for name, front in self.fronts.items()}
        await self._proxy()

    async def _client(self, app: Any) -> Client:
        client: Client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        self.clients.append(client)
        return client

    async def _proxy(self) -> None:
        doc = proxy_doc(
            self.urls["legacy"],
            self.urls["new"],
            f"sqlite:///{self.folder}/state.db",
            **self.routing,
        )
        doc |= SECTIONS
        config = self.folder / "memshift.toml"
        config.write_text(toml_of(doc))
        proxy_app, admin_app = make_apps(new_proxy(parse_settings(doc, source=str(config))))
        proxy, admin = await self._client(proxy_app), await self._client(admin_app)
        self.stack = Stack(self.stores["legacy"], self.stores["new"], proxy, admin, config)

    @property
    def proxy(self) -> Client:
        assert self.stack is not None
        return self.stack.proxy

    async def close(self) -> None:
        for client in reversed(self.clients):
            await client.close()
        for front in self.fronts.values():
            await front.close()

    # Faults

    async def fault(self, step: Fault) -> None:
        _seen(f"fault {step.what}")
        new, legacy = self.fronts["new"], self.fronts["legacy"]
        if step.what == "new_down" and not new.down:
            new.stop_listening()
        elif step.what == "new_up":
            await new.heal()
        elif step.what == "new_refuse":
            new.next_writes += [REFUSE] * 3  # more than a mirrored write's attempts
        elif step.what == "new_cut":
            new.next_writes.append(step.how)
        elif step.what.startswith("legacy_"):
            fault: dict[str, Cut | Literal["refuse", "lose"]] = {
                "legacy_cut": step.how,
                "legacy_lose": LOSE,
                "legacy_refuse": REFUSE,
            }
            legacy.next_writes = [fault[step.what]]
            self.legacy_armed = True
        elif step.what == "restart":
            await self.restart()
        elif step.what == "settle":
            await self.settle()

    async def restart(self) -> None:
        """Close the proxy (its state db with it) and build it again on the same files."""
        assert self.stack is not None
        for client in (self.stack.proxy, self.stack.admin):
            await client.close()
            self.clients.remove(client)
        await self._proxy()

    async def settle(self) -> None:
        """Heal every fault, wait for the backlog to drain, then check both stores."""
        for front in self.fronts.values():
            await front.heal()
        self.legacy_armed = False
        assert self.stack is not None
        await drained(self.stack, within=60)
        figures = await self.stack.core.writelog.figures()
        assert (0, 0) == (figures["divergent"], figures["held"]), figures
        await assert_stores_match(self.stack)  # 1: both stores hold the same records
        await self.reconcile()  # 2 and 3: legacy holds what the answers said

    # Client steps

    async def call(
        self, user: str, method: str, path: str, body: Any = None
    ) -> tuple[int, Any, str]:
        answer = await self.proxy.request(method, path, json=body, headers=auth(user))
        text = await answer.text()
        served = answer.headers.get("X-Memshift-Served-By", "")
        doc = await answer.json() if text else None
        self.log.append(f"{method} {path} {body} as {user}: {answer.status} by {served}")
        _seen(f"{method} answered {answer.status}" + (f" by {served}" if method == "GET" else ""))
        return answer.status, doc, served

    def target(self, kind: str, ref: Ref) -> tuple[Rec | None, str]:
        """The record a reference names, and its id as the step spells it."""
        made = self.model.made.get((ref.owner, kind), [])
        rec = made[ref.n % len(made)] if made and ref.owner != NOBODY else None
        number = rec.id if rec is not None else GHOST_BASE + ref.n
        return rec, f"{number:019d}" if ref.padded else str(number)

    async def step(self, step: Step) -> None:
        if isinstance(step, Fault):
            await self.fault(step)
            return
        if isinstance(step, Read):
            await self.read(step)
            return
        armed = self.legacy_armed
        try:
            if isinstance(step, Create):
                await self.create(step, armed)
            elif isinstance(step, Patch):
                await self.patch(step, armed)
            else:
                await self.delete(step, armed)
        finally:
            self.fronts["legacy"].next_writes.clear()
            self.legacy_armed = False

    def touches(self, step: Create | Patch | Delete) -> set[tuple[str, int]]:
        """The records a write changes or refers to."""
        if isinstance(step, Create):
            kinds = ("context",) if step.kind == "memory" else ("memory", "memory")
            named = [self.target(k, ref)[0] for k, ref in zip(kinds, step.refs, strict=False)]
        else:
            named = [self.target(step.kind, step.ref)[0]]
        return {(r.kind, r.id) for r in named if r is not None}

    def expect(self, status: int, allowed: set[int], armed: bool, step: Step) -> None:
        # With a fault armed on legacy the write may be refused (503) or its answer lost
        # (502); replay, sending an earlier lost write again, may take the fault instead.
        allowed = allowed | ({502, 503} if armed else set())
        assert status in allowed, f"{step}: {status}, expected one of {sorted(allowed)}"

    async def create(self, step: Create, armed: bool) -> None:
        n = next(self.serial)
        title = f"{step.user}-{step.kind}-{n}"
        body: dict[str, Any]
        allowed: set[int] = {201}
        unsure: Unsure
        ok = {True}
        if step.kind == "memory":
            tag = f"tag{n}x"
            body = {"title": title, "content": f"about {tag}", "context_id": None}
            context = None
            if step.refs:
                rec, _ = self.target("context", step.refs[0])
                context = rec.id if rec is not None else GHOST_BASE + step.refs[0].n
                body["context_id"] = context
                ok = (
                    {False}
                    if rec is None
                    else {alive and self.model.visible(rec, step.user) for alive in rec.alive}
                )
            body["access_level"] = "public" if step.public else "private"
            unsure = Unsure("memory", step.user, title, step.public, tag, context=context)
        elif step.kind == "context":
            body = {"name": title, "access_level": "public" if step.public else "private"}
            unsure = Unsure("context", step.user, title, step.public)
        else:
            ends = [self.target("memory", ref)[0] for ref in step.refs]
            ids = [
                GHOST_BASE + ref.n if r is None else r.id
                for r, ref in zip(ends, step.refs, strict=True)
            ]
            body = {"name": title, "source_id": ids[0], "target_id": ids[1], "strength": 0.5}
            known = [r for r in ends if r is not None]
            ok = (
                {False}
                if len(known) < 2
                else {
                    all(
                        alive and self.model.visible(r, step.user)
                        for r, alive in zip(known, states, strict=True)
                    )
                    for states in itertools.product(*(r.alive for r in known))
                }
            )
            unsure = Unsure("relation", step.user, title, False, ends=(ids[0], ids[1]))
        allowed = {201 if good else 422 for good in ok}
        status, doc, _ = await self.call(step.user, "POST", PATHS[step.kind], body)
        self.expect(status, allowed, armed, step)
        if status == 201:
            assert (doc["owner"], doc.get("title", doc.get("name"))) == (step.user, title)
            rec = Rec(
                step.kind,
                doc["id"],
                step.user,
                step.public,
                title if step.kind != "context" else "",
                tag=unsure.tag,
                context=unsure.context,
                ends=unsure.ends,
            )
            self.model.add(rec)
        elif status == 502:
            self.model.lost.append(unsure)
        elif status == 503:
            self.model.refused.append(unsure)

    async def patch(self, step: Patch, armed: bool) -> None:
        rec, spelled = self.target(step.kind, step.ref)
        n = next(self.serial)
        value = f"{step.user}-patched-{n}"
        body = {"title": value} if step.kind == "memory" else {"description": value}
        allowed = _change(rec, step.user, self.model, {200})
        status, doc, _ = await self.call(step.user, "PATCH", f"{PATHS[step.kind]}/{spelled}", body)
        self.expect(status, allowed, armed, step)
        if rec is None:
            return
        if rec.owner != step.user:  # never applied: the owner's record is as it was
            await self.unchanged(rec)
        elif status == 200:
            assert rec.id == doc["id"]
            rec.titles, rec.alive = {value}, {True}
            rec.history.add(value)
        elif status == 502:
            rec.titles.add(value)
            rec.history.add(value)

    async def delete(self, step: Delete, armed: bool) -> None:
        rec, spelled = self.target(step.kind, step.ref)
        ok = {204}
        if rec is not None and step.kind == "context":
            inside = [m for m in self.model.of("memory") if m.context == rec.id and True in m.alive]
            maybe = any(u.context == rec.id for u in self.model.lost)
            if any(m.alive == {True} for m in inside):
                ok = {409}
            elif inside or maybe:
                ok = {204, 409}
        allowed = _change(rec, step.user, self.model, ok)
        status, _, _ = await self.call(step.user, "DELETE", f"{PATHS[step.kind]}/{spelled}")
        self.expect(status, allowed, armed, step)
        if rec is None:
            return
        if rec.owner != step.user:
            await self.unchanged(rec)
            return
        if status not in (204, 502):
            return
        gone = [rec]
        if step.kind == "memory":
            gone += [r for r in self.model.of("relation") if rec.id in r.ends]
        for r in gone:
            if status == 204:
                r.alive = {False}
            else:
                r.alive.add(False)

    async def unchanged(self, rec: Rec) -> None:
        """Another user's write was refused: legacy still holds the record as the model."""
        answer = await self.stores["legacy"].get(f"{PATHS[rec.kind]}/{rec.id}", headers=SERVICE)
        if answer.status == 404:
            assert False in rec.alive, f"{rec.kind} {rec.id} of {rec.owner} is gone"
            return
        assert True in rec.alive, f"{rec.kind} {rec.id} of {rec.owner} is back"
        doc = await answer.json()
        assert self._title(rec.kind, doc) in rec.titles, (rec, doc)

    @staticmethod
    def _title(kind: str, doc: dict[str, Any]) -> str:
        return str(
            doc["title" if kind == "memory" else "description" if kind == "context" else "name"]
        )

    # Reads: exact from legacy (as far as the model is sure); from new, never a wrong id
    # or a record the user may not see, and nothing the record never was.

    async def read(self, step: Read) -> None:
        model, user = self.model, step.user
        if step.what in ("memory", "context", "relations"):
            kind = "context" if step.what == "context" else "memory"
            rec, spelled = self.target(kind, step.ref)
            suffix = "/relations" if step.what == "relations" else ""
            status, doc, served = await self.call(user, "GET", f"{PATHS[kind]}/{spelled}{suffix}")
            allowed = _read(rec, user, model)
            if served == "new" and rec is not None and model.visible(rec, user):
                allowed.add(200)  # new may lag behind a delete
            assert status in allowed, f"{step}: {status} by {served}, expected {allowed}"
            if status != 200:
                return
            assert rec is not None
            if step.what == "relations":
                memory_id = rec.id
                self.check_listed(
                    "relation", doc["items"], served, user, lambda r: memory_id in r.ends
                )
                return
            assert (rec.id, rec.owner) == (doc["id"], doc["owner"]), (step, doc)
            titles = rec.titles if served == "legacy" else rec.history
            assert self._title(kind, doc) in titles, (step, doc, titles)
        elif step.what == "list":
            status, doc, served = await self.call(user, "GET", "/v1/memories?limit=1000")
            assert 200 == status
            self.check_listed("memory", doc["items"], served, user, lambda r: True)
        else:
            rec, _ = self.target("memory", step.ref)
            tag = rec.tag if rec is not None else f"nothing{step.ref.n}x"
            status, doc, served = await self.call(user, "GET", f"/v1/search?q={tag}")
            assert 200 == status
            self.check_listed("memory", doc["results"], served, user, lambda r: r.tag == tag)

    def check_listed(
        self,
        kind: str,
        items: Sequence[dict[str, Any]],
        served: str,
        user: str,
        which: Callable[[Rec], bool],
    ) -> None:
        """The records a read listed are those of ``kind`` and ``which`` its user may see:
        from legacy, each one sure to exist and none that may not; from new, a lagging
        subset, each one a record the user may see, by legacy's id."""
        model = self.model
        wanted = [r for r in model.of(kind) if which(r) and model.visible(r, user)]
        got = {item["id"] for item in items}
        for item in items:
            rec = model.recs.get((kind, item["id"]))
            if rec is None:  # a create answered 502, found later
                assert any(u.kind == kind for u in model.lost), (kind, item, served)
                continue
            assert model.visible(rec, user) and which(rec), (kind, item, served, user)
            if kind != "relation" and "title" in item:
                assert item["title"] in rec.history, (item, rec)
        if served == "legacy":
            sure = {r.id for r in wanted if r.alive == {True}}
            maybe = {r.id for r in wanted if True in r.alive}
            assert sure <= got, (kind, sorted(sure - got), served)
            assert {i for i in got if (kind, i) in model.recs} <= maybe, (kind, sorted(got), served)

    # Settling: legacy as the model says, then both stores equal.

    async def reconcile(self) -> None:
        """Check legacy against the model (invariants 2 and 3) and make the model sure."""
        assert self.stack is not None
        legacy, new = await dump(self.stores["legacy"]), await dump(self.stores["new"])
        model = self.model
        for kind, records in legacy.items():
            by_title: dict[str, list[int]] = {}  # by name for contexts and relations
            for record in records.values():
                by_title.setdefault(record.get("name", record.get("title", "")), []).append(
                    record["id"]
                )
            for rec in model.of(kind):
                found = records.get(rec.id)
                assert (found is not None) in rec.alive, (kind, rec, "exists" if found else "gone")
                if found is not None:
                    assert found["owner"] == rec.owner
                    assert self._title(kind, found) in rec.titles, (rec, found)
                    rec.titles = {self._title(kind, found)}
                rec.alive = {found is not None}
            for unsure in model.refused:
                if unsure.kind == kind:
                    assert unsure.title not in by_title, f"refused create is there: {unsure}"
            for unsure in model.lost:
                if unsure.kind != kind:
                    continue
                ids = by_title.get(unsure.title, [])
                assert len(ids) <= 1, f"a create answered 502 made {len(ids)}: {unsure}"
                if ids:
                    rec = Rec(
                        kind,
                        ids[0],
                        unsure.owner,
                        unsure.public,
                        unsure.title if kind != "context" else "",
                        tag=unsure.tag,
                        context=unsure.context,
                        ends=unsure.ends,
                    )
                    model.add(rec)
            known = {rec.id for rec in model.of(kind)}
            extra = set(records) - known
            assert not extra, f"{kind} {sorted(extra)} on legacy: nobody's acknowledged write"
            # Every create the model holds is on new exactly once (ours: not the seed's).
            on_new = [
                str(r.get("name", r.get("title")))
                for r in new[kind].values()
                if r["owner"] != "seed"
            ]
            twice = {t for t in on_new if on_new.count(t) > 1}
            assert not twice, f"{kind} made twice on new: {sorted(twice)}"
        model.lost.clear()


async def _scenario(steps: Sequence[Step], write_mode: str, read_percent: int) -> None:
    with tempfile.TemporaryDirectory(prefix="memshift-props-") as folder:
        world = World(Path(folder), write_mode, read_percent)
        try:
            await world.start()
            for step in steps:
                await world.step(step)
            await world.settle()
        except BaseException as exc:
            exc.add_note(f"write_mode={write_mode}, read_percent={read_percent}, steps={steps!r}")
            exc.add_note("requests:\n  " + "\n  ".join(world.log[-40:]))
            raise
        finally:
            await world.close()


def run(steps: Sequence[Step], write_mode: str = "sync", read_percent: int = 0) -> None:
    """Run one history in a fresh world on an event loop of its own."""
    asyncio.run(_scenario(steps, write_mode, read_percent))


# Histories the random runs found failing, cut down to the steps that matter, each kept
# as a regression test and as an example of the property.

# A PATCH lost on its way to legacy (502), then another PATCH of the record (200): replay
# sent the lost one to legacy after the second, and mirrored both to new in log order.
# Legacy ended with the first title, new with the second. The later write now settles
# the lost one at the primary first (503 earlier_write_unsettled while it cannot).
LOST_PATCH_THEN_PATCH: list[Step] = [
    Create("user1", "memory"),
    Fault("legacy_lose"),
    Patch("user1", "memory", Ref("user1")),
    Patch("user1", "memory", Ref("user1")),
]
# The same with a DELETE lost first: legacy applied the PATCH (200), then replay deleted
# the memory; on new the DELETE landed first and the PATCH was refused (divergent).
LOST_DELETE_THEN_PATCH: list[Step] = [
    Create("user1", "memory"),
    Fault("legacy_lose"),
    Delete("user1", "memory", Ref("user1")),
    Patch("user1", "memory", Ref("user1")),
]
# user1 relates user2's public memory to their own private one; once user2 had a relation
# of their own, the store listed user1's relation to user2 too (source and target ids of
# a private memory), on both engines.
RELATION_LEAK: list[Step] = [
    Create("user2", "memory", public=True),
    Create("user1", "memory"),
    Create("user1", "relation", refs=(Ref("user2"), Ref("user1"))),
    Create("user2", "relation", refs=(Ref("user2"), Ref("user2"))),
    Read("user2", "relations", Ref("user2")),
]


def _runs(examples: int, *, derandomize: bool) -> settings:
    return settings(
        max_examples=examples,
        derandomize=derandomize,
        deadline=None,  # a history takes seconds, and a restart more than others
        database=None,  # no example database written into the project
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.mark.slow
@_runs(12, derandomize=True)
@given(
    steps=st.lists(STEP, min_size=20, max_size=60),
    write_mode=WRITE_MODES,
    read_percent=READ_PERCENTS,
)
@example(steps=LOST_PATCH_THEN_PATCH, write_mode="sync", read_percent=0)
@example(steps=LOST_DELETE_THEN_PATCH, write_mode="async", read_percent=100)
@example(steps=RELATION_LEAK, write_mode="sync", read_percent=0)
def test_random_histories_leave_both_stores_equal(
    steps: list[Step], write_mode: str, read_percent: int
) -> None:
    """Any history of two users' writes and reads, with faults, ends with equal stores,
    each acknowledged write there once and nobody's record changed by another user."""
    run(steps, write_mode, read_percent)


@pytest.mark.slow
@_runs(SLOW_EXAMPLES, derandomize=False)
@given(
    steps=st.lists(STEP, min_size=20, max_size=80),
    write_mode=WRITE_MODES,
    read_percent=READ_PERCENTS,
)
def test_many_random_histories_leave_both_stores_equal(
    steps: list[Step], write_mode: str, read_percent: int
) -> None:
    """The same property, over many more (random) histories."""
    run(steps, write_mode, read_percent)


def test_cross_user_writes_by_padded_ids_change_nothing() -> None:
    """Each user's PATCH and DELETE of the other's records, by plain and padded ids, is
    refused and leaves the records as their owners made them, on both stores."""
    steps: list[Step] = [
        Create("user1", "memory"),
        Create("user1", "memory", public=True),
        Create("user2", "context"),
        Create("user2", "memory", refs=(Ref("user2"),)),
        Create("user1", "relation", refs=(Ref("user1"), Ref("user1", 1))),
    ]
    for owner, other in (("user1", "user2"), ("user2", "user1")):
        for n, padded in itertools.product((0, 1), (False, True)):
            ref = Ref(owner, n, padded)
            steps += [Patch(other, "memory", ref), Delete(other, "memory", ref)]
            steps += [Patch(other, "context", ref), Delete(other, "context", ref)]
        steps.append(Delete(other, "relation", Ref(owner, 0, True)))
    run([*steps, Fault("settle")])


@pytest.mark.parametrize(
    "steps", [LOST_PATCH_THEN_PATCH, LOST_DELETE_THEN_PATCH], ids=["patch", "delete"]
)
def test_a_lost_write_then_another_write_of_the_record(steps: list[Step]) -> None:
    """After a write lost on its way to legacy (502), another write of the same record is
    acknowledged; both stores end equal, holding the write acknowledged last (found by
    the random histories: replay sent the lost write to legacy after the later one)."""
    run(steps)


def test_relations_of_a_private_memory_stay_private() -> None:
    """A user lists the relations of a memory and sees only those whose both memories
    they may see (found by the random histories: the store's visibility subquery was
    not tied to the relation, and one visible relation showed them all)."""
    run(RELATION_LEAK)
