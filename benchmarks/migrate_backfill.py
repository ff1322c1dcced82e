"""Backfill and verify of 50,000 records: records per second and peak memory of each.

    python -m benchmarks.migrate_backfill [--memories N] [--contexts N] [--relations N]

The legacy store's SQLite file is filled directly (through the store's own code, one
transaction) with contexts, memories of real text (200 B to 8 KiB, a few of 64 KiB) and
relations; then both stores run as processes, and ``memshift backfill`` and ``memshift
verify`` run as processes against them. Peak memory is each command's own VmHWM.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection

from benchmarks.harness import StoreProcess, corpus, report, slices, store_process
from memshift.database import Database
from memshift.store.app import content_store, prepare_store
from memshift.store.call import Call
from memshift.store.contexts import create_context
from memshift.store.memories import create_memory
from memshift.store.relations import create_relation
from memshift.store.settings import StoreSettings
from memshift.store.tokens import Principal

MIB = 1024 * 1024
OWNERS = [Principal(f"user{i}") for i in range(20)]


def seed(db_url: str, contexts: int, memories: int, relations: int) -> None:
    """Fill a legacy store's database as if it had lived for years before memshift."""
    rnd = random.Random(11)
    texts = slices(corpus(8_000_000), 2_000, 200, 8 * 1024) + slices(corpus(), 20, 65536, 65536)
    db = Database(db_url)
    content = content_store(StoreSettings(engine="legacy", db_url=db_url))
    prepare_store(db, "legacy", content)
    made_contexts: list[list[int]] = [[] for _ in OWNERS]
    made_memories: list[list[int]] = [[] for _ in OWNERS]

    def write(conn: Connection) -> None:
        for i in range(contexts):
            owner = i % len(OWNERS)
            call = Call(OWNERS[owner], content)
            made_contexts[owner].append(create_context(conn, call, {"name": f"ctx {i}"})["id"])
        for i in range(memories):
            owner = i % len(OWNERS)
            call = Call(OWNERS[owner], content)
            data: dict[str, Any] = {
                "title": f"memory {i}",
                "content": rnd.choice(texts),
                "context_id": rnd.choice(made_contexts[owner]) if rnd.random() < 0.7 else None,
                "metadata": {"i": i},
            }
            made_memories[owner].append(create_memory(conn, call, data)["id"])
        for i in range(relations):
            owner = i % len(OWNERS)
            call = Call(OWNERS[owner], content)
            source, target = rnd.sample(made_memories[owner], 2)
            create_relation(conn, call, {"name": "r", "source_id": source, "target_id": target})

    db.write_sync(write)
    db.close()


def timed(args: list[str]) -> tuple[float, int, bytes]:
    """Run ``memshift ARGS``; return seconds, peak RSS in bytes, and what it printed."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "memshift", "--log-level", "warning", *args],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    peak = [0]

    def watch() -> None:  # VmHWM of the command itself (ru_maxrss would count the fork)
        while proc.poll() is None:
            with contextlib.suppress(OSError, KeyError):
                peak[0] = max(peak[0], StoreProcess(proc, "").status("VmHWM"))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out = proc.stdout.read()
    proc.wait()
    watcher.join()
    seconds = time.monotonic() - started
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"memshift {args[0]} exited {proc.returncode}")
    return seconds, peak[0], out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contexts", type=int, default=2_000)
    parser.add_argument("--memories", type=int, default=40_000)
    parser.add_argument("--relations", type=int, default=8_000)
    args = parser.parse_args()
    total = args.contexts + args.memories + args.relations
    with tempfile.TemporaryDirectory(prefix="memshift-bench-") as tmp:
        legacy_url = f"sqlite:///{tmp}/legacy.db"
        started = time.monotonic()
        seed(legacy_url, args.contexts, args.memories, args.relations)
        print(f"seeded {total} records in {time.monotonic() - started:.0f} s", flush=True)
        with store_process("legacy", legacy_url) as legacy, store_process("new") as new:
            config = Path(tmp) / "memshift.toml"
            config.write_text(
                f'[stores.legacy]\nurl = "{legacy.url}"\ntoken = "tok-ops"\n'
                f'[stores.new]\nurl = "{new.url}"\ntoken = "tok-ops"\n'
                f'[admin]\ntoken = "bench"\n[state]\nurl = "sqlite:///{tmp}/state.db"\n'
            )
            fill_s, fill_rss, out = timed(["backfill", "--config", str(config), "--json"])
            filled = orjson.loads(out)
            verify_s, verify_rss, out = timed(["verify", "--config", str(config), "--json"])
            checked = orjson.loads(out)
    rows = [
        ["backfill", total, f"{fill_s:.0f}", f"{total / fill_s:.0f}", f"{fill_rss / MIB:.0f}"],
        ["verify", total, f"{verify_s:.0f}", f"{total / verify_s:.0f}", f"{verify_rss / MIB:.0f}"],
    ]
    report(
        "migrate_backfill",
        ["command", "records", "seconds", "records_per_s", "peak_rss_MiB"],
        rows,
        {
            "records": total,
            "backfill": {"seconds": fill_s, "peak_rss": fill_rss, "report": filled},
            "verify": {"seconds": verify_s, "peak_rss": verify_rss, "equal": checked["equal"]},
        },
    )


if __name__ == "__main__":
    main()
