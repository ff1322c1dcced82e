"""The migration commands as the CLI runs them: open the state db, run, print, exit status."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from memshift.config.load import load_settings
from memshift.config.settings import Settings, StoreName
from memshift.control.state import read_state
from memshift.database import Database
from memshift.migrate import backfill, jobs, verify
from memshift.migrate.marks import mark_backfilled
from memshift.runtime import run_async
from memshift.statedb import open_state


def _dumps(doc: object) -> str:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()


def _primary(state: Database, configured: StoreName) -> StoreName:
    """Return the primary the proxies obey now (the config's before they first ran)."""
    found = state.read_sync(read_state)
    return found[0].primary if found is not None else configured


def _reference(settings: Settings, job: str) -> bool:
    """Whether the stores are reference stores (their own migration); else the profile's
    recipes must allow ``job`` (one line and exit 2 when they do not)."""
    if settings.records:
        jobs.check_recipes(settings, job)
        return False
    if settings.stores["legacy"].profile != "memshift-reference":
        jobs.check_recipes(settings, job)
    return True


def _state_primary(settings: Settings) -> StoreName:
    state = open_state(settings.state.url)
    try:
        return _primary(state, settings.routing.primary)
    finally:
        state.close()


def run_backfill(config: Path, options: backfill.Options, as_json: bool) -> int:
    """``memshift backfill``: 0 when every record is copied or present, 1 otherwise."""
    settings = load_settings(config)
    if not _reference(settings, "backfill"):
        report = jobs.run(settings, "backfill", False, _state_primary(settings))
        print(_dumps(report) if as_json else backfill.text(report))
        return 0 if report["complete"] else 1
    state = open_state(settings.state.url)
    try:

        async def run() -> dict[str, object]:
            return await backfill.Backfill(settings, state, options, sys.stderr).run()

        try:
            report = run_async(run())
        except KeyboardInterrupt:
            print("\nmemshift: backfill interrupted; run again with --resume", file=sys.stderr)
            return 130
    finally:
        state.close()
    print(_dumps(report) if as_json else backfill.text(report))
    return 0 if report["complete"] else 1


def run_verify(config: Path, repair: bool, as_json: bool) -> int:
    """``memshift verify``: 0 when both stores agree (after the repair, with one), else 1."""
    settings = load_settings(config)
    if not _reference(settings, "verify"):
        found = jobs.run(settings, "verify", repair, _state_primary(settings))
        print(_dumps(found) if as_json else verify.text_of(found))
        return 0 if found["equal"] else 1
    state = open_state(settings.state.url)
    try:
        primary = _primary(state, settings.routing.primary)
        results, repaired = run_async(verify.verify(settings, state, primary, repair=repair))
        doc = verify.summary(results, primary, repaired)
        if repair and doc["equal"]:
            run_async(mark_backfilled(state))
    finally:
        state.close()
    print(_dumps(doc) if as_json else verify.text(results, repaired))
    return 0 if doc["equal"] else 1
