"""``GET /report.html``: the consistency report as one self-contained page for people.

No script, font or style sheet is loaded from anywhere: the page is rendered on the
server from the same document as ``GET /report``, with an inline SVG chart, and it
refreshes itself every 10 seconds. Every value is HTML-escaped.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

import orjson

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2330;background:#fafbfc}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.ramp span{display:inline-block;margin-right:18px}.muted{color:#667}
table{border-collapse:collapse;background:#fff}
td,th{padding:5px 10px;border-bottom:1px solid #e3e6ea;text-align:right}
th{background:#f0f2f5}td.l,th.l{text-align:left}.bad{color:#b3261e;font-weight:600}
.diff{display:grid;grid-template-columns:1fr 1fr;gap:8px;margin:6px 0 14px}
pre{background:#fff;border:1px solid #e3e6ea;padding:6px 8px;margin:0;
white-space:pre-wrap;word-break:break-all}
.sample{border-left:3px solid #b3261e;padding-left:10px;margin-bottom:10px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _json(value: Any) -> str:
    return _e(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _chart(series: list[dict[str, Any]]) -> str:
    if not series:
        return '<p class="muted">No comparisons yet.</p>'
    width, height, pad = 720, 180, 30
    top = max(max(p["compared"] for p in series), 1)
    step = (width - 2 * pad) / max(len(series) - 1, 1)

    def line(key: str) -> str:
        return " ".join(
            f"{pad + i * step:.1f},{height - pad - p[key] / top * (height - 2 * pad):.1f}"
            for i, p in enumerate(series)
        )

    first = datetime.fromtimestamp(series[0]["at"], UTC).strftime("%H:%M")
    last = datetime.fromtimestamp(series[-1]["at"], UTC).strftime("%H:%M")
    return (
        f'<svg id="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="compared and mismatched per minute">'
        f'<rect width="{width}" height="{height}" fill="#fff" stroke="#e3e6ea"/>'
        f'<polyline fill="none" stroke="#2f6fdb" stroke-width="2" points="{line("compared")}"/>'
        f'<polyline fill="none" stroke="#b3261e" stroke-width="2" points="{line("mismatched")}"/>'
        f'<text x="{pad}" y="{height - 8}" font-size="11">{first} UTC</text>'
        f'<text x="{width - pad}" y="{height - 8}" font-size="11" text-anchor="end">{last}</text>'
        f'<text x="{pad}" y="18" font-size="11">max {top}/min</text>'
        f'<text x="{width - pad}" y="18" font-size="11" text-anchor="end">'
        f'<tspan fill="#2f6fdb">compared</tspan> · <tspan fill="#b3261e">mismatched</tspan></text>'
        "</svg>"
    )


def _fields(fields: list[dict[str, Any]]) -> str:
    return ", ".join(f"{_e(f['path'])} ({f['count']})" for f in fields[:5])


def _routes(routes: list[dict[str, Any]]) -> str:
    rows = "".join(
        f'<tr><td class="l">{_e(r["route"])}</td><td>{r["compared"]}</td><td>{r["matched"]}</td>'
        f'<td class="{"bad" if r["mismatched"] else ""}">{r["mismatched"]}</td>'
        f"<td>{r['pending']}</td><td>{r['inflight']}</td><td>{r['noise']}</td>"
        f"<td>{r['errors']}</td><td>{r['mismatch_rate']:.2%}</td>"
        f'<td class="l">{_fields(r["fields"])}</td></tr>'
        for r in routes
    )
    return (
        '<table id="routes"><tr><th class="l">route</th><th>compared</th><th>matched</th>'
        "<th>mismatched</th><th>pending</th><th>in-flight</th><th>noise</th><th>error</th>"
        "<th>mismatch rate</th>"
        f'<th class="l">top fields</th></tr>{rows}</table>'
    )


def _samples(samples: list[dict[str, Any]]) -> str:
    if not samples:
        return '<p class="muted">No differences seen.</p>'
    out = []
    for s in samples[:10]:
        at = datetime.fromtimestamp(s["at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        diffs = "".join(
            f'<div><b>{_e(d["path"])}</b> <span class="muted">{_e(d["kind"])}</span></div>'
            f'<div class="diff"><pre>{_json(d["control"])}</pre><pre>{_json(d["candidate"])}'
            "</pre></div>"
            for d in s["differences"][:6]
        )
        if len(s["differences"]) > 6:
            diffs += f'<div class="muted">… {len(s["differences"]) - 6} more</div>'
        records = ", ".join(
            f"{r['kind']} {r['legacy']} (new {r['new'] if r['new'] is not None else '?'})"
            for r in s.get("records", [])
        )
        who = f" · user {_e(s['user'])}" if s.get("user") else ""
        out.append(
            f'<div class="sample"><div>{_e(at)} · <b>{_e(s["route"])}</b> · {_e(s["verdict"])} · '
            f"legacy {_e(s['control']['status'] or s['control']['error'])} / new "
            f"{_e(s['candidate']['status'] or s['candidate']['error'])}"
            f"{' · ' + _e(records) if records else ''}{who}</div>"
            f'<div class="diff muted"><div>legacy</div><div>new</div></div>{diffs}</div>'
        )
    return "".join(out)


def render(doc: dict[str, Any]) -> str:
    """Return the page for a ``GET /report`` document."""
    t, ramp, window = doc["totals"], doc["ramp"], doc["window"]
    since = datetime.fromtimestamp(window["since"], UTC).strftime("%Y-%m-%d %H:%M:%S")
    start = doc["since_start"]["totals"]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="10"><link rel="icon" href="data:,">'
        "<title>memshift consistency report</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>memshift consistency report</h1>"
        f'<div class="ramp"><span>primary <b id="primary">{_e(ramp["primary"])}</b></span>'
        f'<span>reads to new <b id="read-percent">{ramp["read_percent"]}%</b></span>'
        f"<span>shadow <b>{ramp['shadow_read_percent']}%</b></span>"
        f'<span class="muted">epoch {ramp["epoch"]}</span></div>'
        f'<h2>Since {_e(since)} UTC <span class="muted">({_e(window["opened_by"])})</span></h2>'
        f'<p id="totals">compared <b>{t["compared"]}</b> · matched {t["matched"]}'
        f' · mismatched <b class="{"bad" if t["mismatched"] else ""}">{t["mismatched"]}</b>'
        f" · pending {t['pending']} · in-flight {t['inflight']} · noise {t['noise']}"
        f" · error {t['errors']} · mismatch rate <b>{t['mismatch_rate']:.2%}</b>"
        f" · dropped {t['dropped']}</p>"
        f'<p class="muted" id="since-start">since start: compared {start["compared"]} · '
        f"mismatched {start['mismatched']} · pending {start['pending']} · "
        f"mismatch rate {start['mismatch_rate']:.2%}</p>"
        f"<h2>Compared and mismatched per minute</h2>{_chart(doc['series'])}"
        f"<h2>Routes</h2>{_routes(doc['routes'])}"
        f"<h2>Latest differences</h2>{_samples(doc['samples'])}"
        "</body></html>"
    )
