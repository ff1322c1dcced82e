"""A small client of the admin API, for the ``memshift`` command."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from typing import Any

import orjson

from memshift.errors import ConfigError, MemshiftError

TOKEN_ENV = "MEMSHIFT_ADMIN_TOKEN"
URL_ENV = "MEMSHIFT_ADMIN_URL"
DEFAULT_ADMIN = "http://127.0.0.1:8109"


def admin_url(given: str | None) -> str:
    """The admin API's base URL: ``--admin``, else ``MEMSHIFT_ADMIN_URL``, else the default."""
    return given or os.environ.get(URL_ENV) or DEFAULT_ADMIN


class AdminError(MemshiftError):
    """The admin API could not be reached or refused the call."""


def admin_token(given: str | None) -> str:
    """Return the admin token from ``--token`` or ``MEMSHIFT_ADMIN_TOKEN``."""
    token = given or os.environ.get(TOKEN_ENV)
    if not token:
        raise ConfigError("--token", f"the admin token is needed: --token or {TOKEN_ENV}")
    return token


def call(base: str, token: str, method: str, path: str, body: Any = None) -> Any:
    """Call the admin API; return its JSON answer; raise ``AdminError`` on failure."""
    if not base.startswith(("http://", "https://")):
        raise ConfigError("--admin", f"must be an http(s) URL, not {base!r}")
    request = urllib.request.Request(
        base.rstrip("/") + path,
        method=method,
        data=orjson.dumps(body) if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            error = orjson.loads(exc.read())["error"]
            message = error["message"]
            if error.get("reasons"):  # a refused promote: a reason a line
                message = "refused:\n  " + "\n  ".join(error["reasons"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            message = exc.reason
        raise AdminError(f"{method} {path}: {exc.code} {message}") from exc
    except (urllib.error.URLError, OSError) as exc:
        why = getattr(exc, "reason", exc)
        raise AdminError(
            f"cannot reach the admin API at {base} ({why}); point elsewhere with "
            f"--admin URL or {URL_ENV}"
        ) from exc


def status_text(doc: dict[str, Any]) -> str:
    """Return ``GET /status`` as a table for people."""
    lines = [
        f"primary       {doc['primary']}    epoch {doc['epoch']}",
        f"reads to new  {doc['read_percent']}%    shadow {doc['shadow_read_percent']}%"
        f"    writes {doc['write_mode']}",
        f"failed back   {'yes: ' + str(doc['reason']) if doc['failed_back'] else 'no'}",
        f"new store     {doc.get('health', '?')}"
        + (f": {doc['health_reason']}" if doc.get("health_reason") else ""),
        f"repair log    {doc['repair_backlog']} waiting",
        "",
        f"{'store':<8}{'requests':>10}{'errors':>8}{'error_rate':>12}{'p50_ms':>9}{'p99_ms':>9}",
    ]
    for name, s in doc["stores"].items():
        lines.append(
            f"{name:<8}{s['requests']:>10}{s['errors']:>8}{s['error_rate']:>12.4f}"
            f"{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}"
        )
    return "\n".join(lines)


def report_text(doc: dict[str, Any]) -> str:
    """Return ``GET /report`` as tables for people."""
    t, window = doc["totals"], doc.get("window", {})
    lines = [
        f"since {window.get('opened_by', 'start')} "
        f"({time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(window.get('since', 0)))} UTC)",
        f"compared {t['compared']}   matched {t['matched']}   mismatched {t['mismatched']}   "
        f"pending {t['pending']}   in-flight {t['inflight']}   noise {t['noise']}   "
        f"error {t['errors']}   mismatch rate {t['mismatch_rate']:.4%}   dropped {t['dropped']}",
        "",
        f"{'route':<22}{'compared':>9}{'matched':>9}{'mismatched':>11}{'pending':>8}"
        f"{'in-flight':>10}{'noise':>7}{'error':>6}{'rate':>9}  top fields",
    ]
    for r in doc["routes"]:
        fields = ", ".join(f"{f['path']} ({f['count']})" for f in r["fields"][:3])
        lines.append(
            f"{r['route']:<22}{r['compared']:>9}{r['matched']:>9}{r['mismatched']:>11}"
            f"{r['pending']:>8}{r['inflight']:>10}{r['noise']:>7}{r['errors']:>6}"
            f"{r['mismatch_rate']:>9.2%}  {fields}"
        )
    for sample in doc["samples"][:5]:
        first = sample["differences"][0] if sample["differences"] else {}
        lines.append(
            f"  {sample['verdict']:<10} {sample['route']:<20} {first.get('path', '')}: "
            f"{first.get('control')!r} → {first.get('candidate')!r}"
        )
    return "\n".join(lines)
