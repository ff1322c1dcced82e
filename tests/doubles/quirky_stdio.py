"""A small MCP server on stdio with the quirks real ones have, for the stdio link's tests.

    python -m tests.doubles.quirky_stdio STATE_DIR

It writes a line of noise to stdout before anything else and a line to stderr; it
answers ``initialize`` with the oldest protocol version (2024-11-05), and the
``notifications/initialized`` notification with an error whose id is ``"unknown"``.
Tools (results are text holding JSON, never structured content):

- ``echo``: first asks its client for a ``ping`` (id ``"srv-1"``), then answers
  ``{"echo": ARGUMENTS, "started": N}`` (N: how many times this server has started);
- ``slow``: answers after 0.5 s, as ``echo`` does;
- ``die``: exits (status 3) without answering.

Every line it receives is appended to ``STATE_DIR/inbound.jsonl``.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

LOCK = threading.Lock()


def _send(msg: dict[str, Any]) -> None:
    with LOCK:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()


def _result(msg: dict[str, Any], started: int) -> None:
    arguments = msg["params"].get("arguments", {})
    text = json.dumps({"echo": arguments, "started": started})
    _send(
        {"jsonrpc": "2.0", "id": msg["id"], "result": {"content": [{"type": "text", "text": text}]}}
    )


def main(state: Path) -> None:
    starts = state / "starts"
    started = int(starts.read_text()) + 1 if starts.exists() else 1
    starts.write_text(str(started))
    print("quirky_stdio: starting up", flush=True)  # noise on stdout
    print("quirky_stdio: a line for the log", file=sys.stderr, flush=True)
    inbound = (state / "inbound.jsonl").open("a")
    for line in sys.stdin:
        inbound.write(line)
        inbound.flush()
        msg = json.loads(line)
        method = msg.get("method")
        if method == "initialize":
            result = {
                "protocolVersion": "2024-11-05",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "quirky", "version": "0"},
            }
            _send({"jsonrpc": "2.0", "id": msg["id"], "result": result})
        elif method == "notifications/initialized":
            error = {"code": -32601, "message": "Method not found"}
            _send({"jsonrpc": "2.0", "id": "unknown", "error": error})
        elif method == "tools/call":
            name = msg["params"]["name"]
            if name == "die":
                sys.exit(3)
            if name == "slow":
                threading.Timer(0.5, _result, (msg, started)).start()
                continue
            _send({"jsonrpc": "2.0", "id": "srv-1", "method": "ping"})
            _result(msg, started)
        elif "id" in msg and method is not None:
            error = {"code": -32601, "message": f"no {method}"}
            _send({"jsonrpc": "2.0", "id": msg["id"], "error": error})


if __name__ == "__main__":
    main(Path(sys.argv[1]))
