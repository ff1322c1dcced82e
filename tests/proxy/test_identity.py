"""Whose a write is, for stores that have no ``whoami``: never a silent pass-through.

Two legacy-style stores (no users, no ``GET /v1/whoami``) behind the proxy, told three
ways: ``identity = "whoami"`` (wrongly: the store cannot say), ``"none"``, and
``{ header = "X-User" }``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import web
from structlog.testing import capture_logs

from memshift.proxy.keys import PROXY
from tests.doubles.legacy_style import make_app
from tests.proxy.conftest import ADMIN, MakeForwarder, MakeProxy
from tests.proxy.test_workload import drained

PROFILE = Path(__file__).resolve().parents[1] / "doubles" / "legacy-style.toml"
MEMORY = {"title": "t", "content": "c"}


def _url(client: Any) -> str:
    return str(client.make_url("")).rstrip("/")


async def _pair(aiohttp_client: Any, tmp_path: Path) -> tuple[dict[str, Path], list[str]]:
    files = {name: tmp_path / f"{name}.json" for name in ("legacy", "new")}
    clients = [await aiohttp_client(make_app(path)) for path in files.values()]
    return files, [_url(c) for c in clients]


def _memories(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [m["title"] for m in json.loads(path.read_text())["memories"].values()]


def _stores(identity: Any) -> dict[str, Any]:
    token = "tok-svc" if identity == "whoami" else ""  # whoami writes as each user
    table = {"profile": str(PROFILE), "token": token, "identity": identity}
    return {"legacy": table, "new": dict(table)}


async def test_an_unidentified_write_is_refused_by_default(
    aiohttp_client: Any, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    """whoami on a store without it: 401 with a reason, and nothing on either store."""
    files, urls = await _pair(aiohttp_client, tmp_path)
    proxy, _ = await make_proxy(*urls, sections={"stores": _stores("whoami")})
    with capture_logs() as logs:
        answer = await proxy.post("/memories", json=MEMORY)
    doc = await answer.json()
    assert (401, "unidentified_write") == (answer.status, doc["error"]["code"])
    assert ([], []) == (_memories(files["legacy"]), _memories(files["new"]))
    assert ["write_refused_unidentified"] == [
        e["event"] for e in logs if e["event"].startswith("write_")
    ]


async def test_an_unidentified_write_passed_through_is_counted_everywhere(
    aiohttp_client: Any, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    """With ``unidentified = "pass"`` the primary alone takes it, and the log, the
    counter and /status all say so."""
    files, urls = await _pair(aiohttp_client, tmp_path)
    proxy, admin = await make_proxy(
        *urls, sections={"stores": _stores("whoami"), "mirror": {"unidentified": "pass"}}
    )
    with capture_logs() as logs:
        answer = await proxy.post("/memories", json=MEMORY)
    assert 201 == answer.status
    assert (["t"], []) == (_memories(files["legacy"]), _memories(files["new"]))
    assert "write_not_mirrored" in [e["event"] for e in logs]
    status = await (await admin.get("/status", headers=ADMIN)).json()
    metrics = await (await admin.get("/metrics", headers=ADMIN)).text()
    assert 1 == status["unmirrored_writes"]
    assert "memshift_unmirrored_writes_total 1.0" in metrics


async def test_a_store_without_users_mirrors_every_write(
    aiohttp_client: Any, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    """identity = none: every write is everyone's, and mirrored."""
    files, urls = await _pair(aiohttp_client, tmp_path)
    proxy, _ = await make_proxy(*urls, sections={"stores": _stores("none")})
    answer = await proxy.post("/memories", json=MEMORY)
    assert 201 == answer.status
    await drained_core(proxy)
    assert (["t"], ["t"]) == (_memories(files["legacy"]), _memories(files["new"]))


async def test_the_user_a_client_names_in_a_header_reaches_both_stores(
    aiohttp_client: Any, make_proxy: MakeProxy, make_forwarder: MakeForwarder, tmp_path: Path
) -> None:
    """identity = { header = "X-User" }: the write is mirrored as that user (the header
    goes to new with it); without the header it is refused."""
    files, urls = await _pair(aiohttp_client, tmp_path)
    seen: list[str | None] = []

    async def record(request: web.Request) -> None:
        if request.method == "POST":
            seen.append(request.headers.get("X-User"))

    new = await make_forwarder(urls[1], record)
    proxy, _ = await make_proxy(urls[0], new, sections={"stores": _stores({"header": "X-User"})})
    answer = await proxy.post("/memories", json=MEMORY, headers={"X-User": "alice"})
    assert 201 == answer.status
    await drained_core(proxy)
    refused = await proxy.post("/memories", json={"title": "u", "content": "c"})
    assert 401 == refused.status
    assert (["t"], ["t"], ["alice"]) == (
        _memories(files["legacy"]),
        _memories(files["new"]),
        seen,
    )


async def drained_core(proxy: Any) -> None:
    class _Stack:
        core = proxy.server.app[PROXY]

    await drained(_Stack())  # type: ignore[arg-type]
