"""Verify, repair and backfill of stores with record recipes, as the CLI runs them.

When the proxy of the config runs (its admin API answers), the job runs there
(``proxy/migrations.py``): it is the one process that may reach a store it runs on
stdio, and it keeps live writes out of each step. The CLI starts the job, shows its
progress, and prints its result. When no proxy runs, nothing writes to the stores,
and the CLI runs the job itself (starting stdio stores as its own children); it
refuses while the write log still holds writes to replay, which a copy could overtake.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from memshift.adminclient import AdminError, call
from memshift.config.settings import Settings, StoreName
from memshift.errors import ConfigError
from memshift.links.stores import StoreLinks
from memshift.migrate.profiled import ProfiledMigration, summary
from memshift.migrate.progress import Progress
from memshift.runtime import run_async
from memshift.scheduler import Scheduler
from memshift.shadow.idmap import IdMap
from memshift.shadow.writelog import WriteLog
from memshift.statedb import open_state

POLL_S = 0.5


def check_recipes(settings: Settings, job: str) -> None:
    """Refuse, in one line naming what is missing, a job the profile cannot do."""
    if not settings.records:
        profile = settings.stores["legacy"].profile
        raise ConfigError(
            "stores.legacy.profile",
            f"the profile {profile!r} says no [records.*]: memshift cannot read its records",
        )
    if job == "backfill":
        for recipe in settings.records:
            if recipe.create is None:
                raise ConfigError(
                    f"records.{recipe.kind}.create",
                    "is missing: the profile cannot create these records, so backfill cannot"
                    " copy them",
                )


def admin_url(settings: Settings) -> str:
    """The admin API of the config's proxy, as a client on this machine reaches it."""
    listen = settings.admin.listen
    host = "127.0.0.1" if listen.host in ("0.0.0.0", "::", "") else listen.host
    return f"http://{host}:{listen.port}"


def run(settings: Settings, job: str, repair: bool, primary: StoreName) -> dict[str, Any]:
    """Run ``job`` in the running proxy, or here; return its result document."""
    base, token = admin_url(settings), settings.admin.token
    try:
        call(base, token, "GET", "/migrate")
    except AdminError:
        return _here(settings, job, repair, primary)
    return _there(base, token, job, repair)


def _there(base: str, token: str, job: str, repair: bool) -> dict[str, Any]:
    started = call(base, token, "POST", "/migrate", {"job": job, "repair": repair})["job"]
    tty = sys.stderr.isatty()
    while True:
        time.sleep(POLL_S)
        doc = call(base, token, "GET", "/migrate")["job"]
        if doc is None or doc["started_at"] != started["started_at"]:
            raise AdminError("the proxy lost the job (it restarted): run it again")
        line = (doc.get("progress") or {}).get("line")
        if line and tty:
            sys.stderr.write("\r\x1b[2K" + line)
            sys.stderr.flush()
        if doc["state"] != "running":
            if tty:
                sys.stderr.write("\n")
            if doc["state"] == "failed":
                raise AdminError(f"{job} failed in the proxy: {doc['error']}")
            result: dict[str, Any] = doc["result"]
            return result


def _here(settings: Settings, job: str, repair: bool, primary: StoreName) -> dict[str, Any]:
    state = open_state(settings.state.url)

    async def main() -> dict[str, Any]:
        figures = await WriteLog(state).figures()
        if figures["backlog"] and (job == "backfill" or repair):
            raise ConfigError(
                "state.url",
                f"the write log holds {figures['backlog']} write(s) to replay: start the proxy"
                " (or memshift replay) first, so that no copy overtakes them",
            )
        background = Scheduler(
            name="migrate", limit=4, pending_limit=16, close_timeout=5, on_error=lambda *_: None
        )
        links = StoreLinks(
            lambda: settings,
            lambda coro, label: background.spawn(coro, label, daemon=True),
            lambda _exchange: None,
        )
        migration = ProfiledMigration(
            settings,
            links.send,
            IdMap(state),
            primary,
            progress=lambda what: Progress(what, 0, sys.stderr),
        )
        try:
            if job == "verify":
                results, repaired = await migration.verify(repair)
                return summary(results, primary, repaired)
            return await migration.backfill()
        finally:
            await links.close()
            await background.close()

    try:
        return run_async(main())
    finally:
        state.close()
