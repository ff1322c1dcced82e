"""A stdio MCP server behind a faulty pipe, for the tests.

    python -m tests.doubles.flaky_stdio STATE_DIR COMMAND...

While ``STATE_DIR/down`` exists, it exits at once: the server cannot start; a running
one exits within 0.1 s of the file appearing (the store is down). While
``STATE_DIR/faults.json`` holds ``{"error": 0.2, "crash_after_apply": 0.05}``, each call
of a tool that writes (any but ``read_*``, ``search_*``, ``open_*``) is, by chance:
answered with a JSON-RPC internal error without reaching the server (a store that
failed), or passed on and, once the server answered it, the whole process exits
without passing the answer on (a store that applied a write and then died).
Everything else passes through, line by line. It dies with its parent, as does the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

from memshift.links.stdio import DIE_WITH_PARENT

READS = ("read_", "search_", "open_")


def _faults(state: Path) -> dict[str, float]:
    try:
        loaded: dict[str, float] = json.loads((state / "faults.json").read_text())
    except (OSError, ValueError):
        return {}
    return loaded


def _writes(msg: Any) -> bool:
    if not isinstance(msg, dict) or msg.get("method") != "tools/call":
        return False
    name = str((msg.get("params") or {}).get("name", ""))
    return not name.startswith(READS)


async def main(state: Path, command: list[str]) -> int:
    if (state / "down").exists():
        print("flaky_stdio: down", file=sys.stderr)
        return 1
    loop = asyncio.get_running_loop()
    child = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=2**26,
        preexec_fn=DIE_WITH_PARENT,
    )
    assert child.stdin is not None and child.stdout is not None
    ours = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(ours), sys.stdin)
    crash_on: set[Any] = set()
    rng = random.Random()

    async def inbound() -> None:
        while line := await ours.readline():
            msg = json.loads(line) if line.strip() else None
            faults = _faults(state)
            if _writes(msg) and rng.random() < faults.get("error", 0.0):
                error = {"code": -32603, "message": "flaky_stdio: internal error"}
                reply = {"jsonrpc": "2.0", "id": msg["id"], "error": error}
                sys.stdout.buffer.write(json.dumps(reply).encode() + b"\n")
                sys.stdout.buffer.flush()
                continue
            if _writes(msg) and rng.random() < faults.get("crash_after_apply", 0.0):
                crash_on.add(msg["id"])
            child.stdin.write(line)  # type: ignore[union-attr]
            await child.stdin.drain()  # type: ignore[union-attr]
        child.stdin.close()  # type: ignore[union-attr]

    async def outbound() -> None:
        while line := await child.stdout.readline():  # type: ignore[union-attr]
            try:
                msg = json.loads(line)
            except ValueError:
                msg = None
            if isinstance(msg, dict) and msg.get("id") in crash_on:
                print("flaky_stdio: crashed after the write was applied", file=sys.stderr)
                os._exit(3)
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()

    async def watch() -> None:
        while not (state / "down").exists():  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        print("flaky_stdio: taken down", file=sys.stderr)
        child.kill()
        os._exit(1)

    reading = asyncio.ensure_future(inbound())
    watching = asyncio.ensure_future(watch())
    await outbound()
    reading.cancel()
    watching.cancel()
    return await child.wait()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1]), sys.argv[2:])))
