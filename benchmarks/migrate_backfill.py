"""Backfill and verify against what the stores themselves can give and take.

    python -m benchmarks.migrate_backfill                    # 50,000 records
    python -m benchmarks.migrate_backfill --records 1000000  # a million
    [--max-bytes N] [--no-limits] [--per-record]

The legacy store's SQLite file is filled directly (through the store's own code, one
transaction): 4 % contexts, 80 % memories of real text (200 B to ``--max-bytes``, a
few of 64 KiB) and 16 % relations. Then both stores run as processes and, in turn:

- **source limit**: every record of legacy exported whole, then the digests of both
  stores exported (what backfill and verify must at least read);
- **target limit**: the same records bulk-imported into a third, fresh new store in
  batches of 500, as backfill sends them (the most the target can take);
- ``memshift backfill`` and ``memshift verify`` as processes, each with its own peak
  memory (VmHWM).

Backfill is reported as a ratio of the import, verify of the digest export of both
stores. ``--per-record`` runs the commands without the bulk paths.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection

from benchmarks.harness import ADMIN, StoreProcess, corpus, report, slices, store_process
from memshift.database import Database
from memshift.store.app import content_store, prepare_store
from memshift.store.call import Call
from memshift.store.contexts import create_context
from memshift.store.memories import insert_memory
from memshift.store.relations import create_relation
from memshift.store.settings import StoreSettings
from memshift.store.tokens import Principal

MIB = 1024 * 1024
OWNERS = [Principal(f"user{i}") for i in range(20)]
KINDS = ("context", "memory", "relation")
REFS = {
    "memory": {"context_id": "context"},
    "relation": {"source_id": "memory", "target_id": "memory"},
}
PAGE = 1000
IMPORT_BATCH = 500  # as backfill sends them


def seed(db_url: str, contexts: int, memories: int, relations: int, max_bytes: int) -> None:
    """Fill a legacy store's database as if it had lived for years before memshift."""
    rnd = random.Random(11)
    texts = slices(corpus(8_000_000), 2_000, 200, max_bytes) + slices(corpus(), 20, 65536, 65536)
    db = Database(db_url)
    content = content_store(StoreSettings(engine="legacy", db_url=db_url))
    prepare_store(db, "legacy", content)
    made_contexts: list[list[int]] = [[] for _ in OWNERS]
    made_memories: list[list[int]] = [[] for _ in OWNERS]
    calls = [Call(owner, content) for owner in OWNERS]

    def write(conn: Connection, kind: str, start: int, end: int) -> None:
        for i in range(start, end):
            owner = i % len(OWNERS)
            call = calls[owner]
            if kind == "context":
                made_contexts[owner].append(create_context(conn, call, {"name": f"ctx {i}"})["id"])
            elif kind == "memory":
                data: dict[str, Any] = {
                    "title": f"memory {i}",
                    "content": rnd.choice(texts),
                    "context_id": rnd.choice(made_contexts[owner]) if rnd.random() < 0.7 else None,
                    "metadata": {"i": i},
                }
                made_memories[owner].append(insert_memory(conn, call, data))
            else:
                source, target = rnd.sample(made_memories[owner], 2)
                create_relation(conn, call, {"name": "r", "source_id": source, "target_id": target})

    for kind, count in (("context", contexts), ("memory", memories), ("relation", relations)):
        for start in range(0, count, 50_000):
            db.write_sync(partial(write, kind=kind, start=start, end=min(start + 50_000, count)))
    db.close()


def _http(method: str, url: str, doc: Any = None) -> bytes:
    body = None if doc is None else orjson.dumps(doc)
    headers = {**ADMIN, "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=600) as resp:
        return bytes(resp.read())


def export(store: StoreProcess, kind: str, content: bool, sink: Any = None) -> int:
    """Export every record of ``kind`` a page at a time (to ``sink``); return how many."""
    after, total, flag = 0, 0, "true" if content else "false"
    while True:
        url = f"{store.url}/v1/bulk/export/{kind}?after={after}&limit={PAGE}&content={flag}"
        lines = _http("GET", url).splitlines()[:-1]  # the last line is the count
        if sink is not None and lines:
            sink.write(b"\n".join(lines) + b"\n")
        total += len(lines)
        if len(lines) < PAGE:
            return total
        after = orjson.loads(lines[-1])["id"]


def import_all(store: StoreProcess, dumps: Path) -> float:
    """Import the exported records into ``store`` in batches; return the seconds it took
    (reading the files is not counted)."""
    pairs: dict[str, dict[int, int]] = {kind: {} for kind in KINDS}
    spent = 0.0
    for kind in KINDS:
        with (dumps / f"{kind}.ndjson").open("rb") as source:
            while batch := [orjson.loads(line) for line in islice(source, IMPORT_BATCH)]:
                records = []
                for line in batch:
                    record = {k: v for k, v in line.items() if k not in ("id", "digest")}
                    for name, other in REFS.get(kind, {}).items():
                        if record.get(name) is not None:
                            record[name] = pairs[other][record[name]]
                    records.append({"key": f"bench-{kind}-{line['id']}", "record": record})
                started = time.monotonic()
                answer = orjson.loads(
                    _http("POST", f"{store.url}/v1/bulk/import/{kind}", {"records": records})
                )
                spent += time.monotonic() - started
                for line, item in zip(batch, answer["items"], strict=True):
                    pairs[kind][line["id"]] = item["id"]
    return spent


def timed(args: list[str]) -> tuple[float, int, bytes, float]:
    """Run ``memshift ARGS``; return seconds, peak RSS in bytes, what it printed, and the
    CPU seconds it used."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "memshift", "--log-level", "warning", *args],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    peak = [0]
    done = threading.Event()

    def watch() -> None:  # VmHWM of the command itself (ru_maxrss would count the fork)
        while not done.wait(0.5):
            with contextlib.suppress(OSError, KeyError):
                peak[0] = max(peak[0], StoreProcess(proc, "").status("VmHWM"))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    watcher.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"memshift {args[0]} exited {proc.returncode}")
    return seconds, peak[0], out, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--max-bytes", type=int, default=8 * 1024)
    parser.add_argument("--no-limits", action="store_true", help="skip the export and import")
    parser.add_argument("--per-record", action="store_true", help="without the bulk paths")
    args = parser.parse_args()
    contexts, relations = args.records * 4 // 100, args.records * 16 // 100
    memories = args.records - contexts - relations
    total = args.records
    figures: dict[str, Any] = {"records": total, "max_bytes": args.max_bytes}
    with tempfile.TemporaryDirectory(prefix="memshift-bench-") as tmp:
        legacy_url = f"sqlite:///{tmp}/legacy.db"
        started = time.monotonic()
        seed(legacy_url, contexts, memories, relations, args.max_bytes)
        print(f"seeded {total} records in {time.monotonic() - started:.0f} s", flush=True)
        with store_process("legacy", legacy_url) as legacy, store_process("new") as new:
            if not args.no_limits:
                figures |= limits(legacy, Path(tmp))
                print(f"limits: {figures}", flush=True)
            config = Path(tmp) / "memshift.toml"
            off = 'bulk = ""\n' if args.per_record else ""
            config.write_text(
                f'[stores.legacy]\nurl = "{legacy.url}"\ntoken = "tok-ops"\n{off}'
                f'[stores.new]\nurl = "{new.url}"\ntoken = "tok-ops"\n{off}'
                f'[admin]\ntoken = "bench"\n[state]\nurl = "sqlite:///{tmp}/state.db"\n'
            )
            fill_s, fill_rss, out, fill_cpu = timed(["backfill", "--config", str(config), "--json"])
            filled = orjson.loads(out)
            print(f"backfill: {fill_s:.0f} s, complete: {filled['complete']}", flush=True)
            verify_s, verify_rss, out, verify_cpu = timed(
                ["verify", "--config", str(config), "--json"]
            )
            checked = orjson.loads(out)
            if not args.no_limits:
                started = time.monotonic()
                for store in (legacy, new):
                    for kind in KINDS:
                        export(store, kind, content=False)
                figures["digest_export_s"] = time.monotonic() - started
    rows = [
        [
            "backfill",
            total,
            f"{fill_s:.0f}",
            f"{total / fill_s:.0f}",
            f"{fill_rss / MIB:.0f}",
            f"{fill_cpu:.0f}",
        ],
        [
            "verify",
            total,
            f"{verify_s:.0f}",
            f"{total / verify_s:.0f}",
            f"{verify_rss / MIB:.0f}",
            f"{verify_cpu:.0f}",
        ],
    ]
    headers = ["step", "records", "seconds", "records_per_s", "peak_rss_MiB", "own_cpu_s"]
    if not args.no_limits:
        headers.append("of_limit")
        rows[0].append(f"{figures['import_s'] / fill_s:.2f}")
        rows[1].append(f"{figures['digest_export_s'] / verify_s:.2f}")
        for name, key in (
            ("legacy export (whole)", "export_s"),
            ("new import (bulk)", "import_s"),
            ("both digests export", "digest_export_s"),
        ):
            seconds = figures[key]
            rows.append([name, total, f"{seconds:.0f}", f"{total / seconds:.0f}", "", "", ""])
    name = "migrate_backfill" if total == 50_000 else f"migrate_backfill_{total}"
    report(
        name + ("_per_record" if args.per_record else ""),
        headers,
        rows,
        {
            **figures,
            "backfill": {
                "seconds": fill_s,
                "cpu_s": fill_cpu,
                "peak_rss": fill_rss,
                "report": filled,
            },
            "verify": {
                "seconds": verify_s,
                "cpu_s": verify_cpu,
                "peak_rss": verify_rss,
                "equal": checked["equal"],
            },
        },
    )
    if not (filled["complete"] and checked["equal"]):
        raise SystemExit("backfill was not complete or verify found differences")


def limits(legacy: StoreProcess, tmp: Path) -> dict[str, float]:
    """Time legacy's whole export and a fresh new store's import of the same records."""
    dumps = tmp / "dumps"
    dumps.mkdir()
    started = time.monotonic()
    for kind in KINDS:
        with (dumps / f"{kind}.ndjson").open("wb") as sink:
            export(legacy, kind, content=True, sink=sink)
    export_s = time.monotonic() - started
    with store_process("new", f"sqlite:///{tmp}/import.db") as target:
        import_s = import_all(target, dumps)
    for path in dumps.iterdir():
        path.unlink()
    (tmp / "import.db").unlink()
    return {"export_s": export_s, "import_s": import_s}


if __name__ == "__main__":
    main()
