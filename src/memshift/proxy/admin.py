"""The admin API: status, ramp, audit and metrics, behind the admin token.

``GET /healthz`` answers without a token (for load balancers); everything else needs
``Authorization: Bearer <admin token>`` and answers 401 without it. The token is
compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson
import structlog
from aiohttp import web

from memshift.compare import store as report_store
from memshift.compare.html import render as render_report
from memshift.config.settings import STORE_NAMES
from memshift.control.state import Conflict
from memshift.errors import ApiError, bad_request, unprocessable
from memshift.limits import BODY_TIMEOUT_S, depth_error, raw_too_deep
from memshift.proxy import admin_openapi
from memshift.proxy.console import handlers as console
from memshift.proxy.console.sessions import Sessions
from memshift.proxy.instance import Proxy
from memshift.proxy.keys import PROXY
from memshift.webutil import Handler, answer_errors, error_response, json_response, read_body

log = structlog.get_logger("memshift.admin")

MAX_ADMIN_BODY = 64 * 1024
ADMIN_JSON_DEPTH = 8  # an admin body is a flat object


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Conflict as exc:  # other instances kept changing the shared state
            raise ApiError(409, "conflict", f"the control state changed meanwhile: {exc}") from exc

    return await answer_errors(request, guarded)


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The admin token as a bearer header, or a console session (with its CSRF token on
    every change); the console's own pages check for themselves."""
    if request.path in admin_openapi.PUBLIC or request.path in console.OPEN_PATHS:
        return await handler(request)
    expected = request.app[PROXY].holder.current.admin.token
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        request[console.SOURCE] = "admin"
        return await handler(request)
    session = console.authorize(request)
    if session is not None:
        if request.method not in ("GET", "HEAD") and not console.csrf_ok(request, session):
            return error_response(403, "csrf", "the console's CSRF token is missing or wrong")
        request[console.SOURCE] = "console"
        return await handler(request)
    response = error_response(401, "unauthorized", "the admin token is required")
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def status_document(request: web.Request) -> dict[str, Any]:
    """Return the ``GET /status`` document."""
    proxy = request.app[PROXY]
    state = proxy.plane.state
    figures = await proxy.backlog()
    settings = proxy.holder.current
    steps = settings.routing.steps
    upcoming = [x for x in steps if x.read_percent > state.read_percent]
    hold = next((x.hold_s for x in steps if x.read_percent == state.read_percent), 0.0)
    last = proxy.holder.last
    return {
        "primary": state.primary,
        "read_percent": state.read_percent,
        "shadow_read_percent": state.shadow_read_percent,
        "write_mode": state.write_mode,
        "failed_back": state.failed_back,
        "reason": state.reason,
        "epoch": state.epoch,
        "repair_backlog": figures["backlog"],
        "repair_backlog_age_s": figures["age_s"],
        "repair_backlog_alert": bool(figures["alert"]),
        "divergent": figures["divergent"],
        "held_writes": figures["held"],
        "unmirrored_writes": proxy.writes.unmirrored,
        "stores": {name: proxy.health.windows[name].figures().as_dict() for name in STORE_NAMES},
        "health": proxy.watchdog.verdict.state,
        "health_reason": proxy.watchdog.verdict.reason,
        "last_reload": last.document() if last is not None else None,
        "health_figures": proxy.watchdog.verdict.figures,
        "thresholds": {
            name: getattr(settings.rollback, name)
            for name in (
                "window_s",
                "min_samples",
                "max_error_rate",
                "max_latency_ratio",
                "max_mismatch_rate",
                "min_callers",
            )
        },
        "schedule": {
            "steps": [{"read_percent": x.read_percent, "hold_s": x.hold_s} for x in steps],
            "next": (
                {
                    "read_percent": upcoming[0].read_percent,
                    "after_healthy_s": max(0.0, hold - proxy.watchdog.schedule.healthy_s),
                }
                if upcoming
                else None
            ),
        },
    }


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await read_body(request, MAX_ADMIN_BODY, BODY_TIMEOUT_S)
    if raw_too_deep(raw, ADMIN_JSON_DEPTH):
        raise depth_error(ADMIN_JSON_DEPTH)
    try:
        doc = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"malformed JSON: {exc}", "malformed_json") from exc
    if not isinstance(doc, dict):
        raise unprocessable("the body must be a JSON object")
    return doc


async def status(request: web.Request) -> web.Response:
    return json_response(await status_document(request))


async def ramp(request: web.Request) -> web.Response:
    body = await _json_body(request)
    unknown = set(body) - {"read_percent", "reason"}
    if unknown:
        raise unprocessable(f"{sorted(unknown)[0]}: unknown field")
    percent = body.get("read_percent")
    if type(percent) is not int or not 0 <= percent <= 100:
        raise unprocessable("read_percent: must be an integer from 0 to 100")
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise unprocessable("reason: must be a string")
    proxy = request.app[PROXY]
    if proxy.plane.state.failed_back and percent > 0:
        raise ApiError(409, "failed_back", "failback is latched: re-arm before ramping")
    await proxy.plane.change({"read_percent": percent}, source=_source(request), reason=reason)
    return json_response(await status_document(request))


async def failback(request: web.Request) -> web.Response:
    body = await _json_body(request)
    reason = body.get("reason", "by hand")
    if not isinstance(reason, str) or not reason:
        raise unprocessable("reason: must be a non-empty string")
    await request.app[PROXY].plane.failback(reason, source=_source(request))
    return json_response(await status_document(request))


async def rearm(request: web.Request) -> web.Response:
    body = await _json_body(request)
    await request.app[PROXY].plane.rearm(source=_source(request), reason=_reason(body))
    return json_response(await status_document(request))


def _source(request: web.Request) -> str:
    """Who acts, for the audit: the bearer API or the console."""
    return str(request.get(console.SOURCE, "admin"))


def _reason(body: dict[str, Any]) -> str | None:
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise unprocessable("reason: must be a string")
    return reason


async def promote(request: web.Request) -> web.Response:
    """``POST /promote {"force"?, "reason"?}``: refused (409, with the reasons) while
    promoting is unsafe, unless forced; a forced promote is audited as forced."""
    body = await _json_body(request)
    proxy = request.app[PROXY]
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise unprocessable("force: must be true or false")
    reason = _reason(body)
    if proxy.plane.state.failed_back:
        raise ApiError(409, "failed_back", "failback is latched: re-arm before promoting")
    blockers = await proxy.judgement.promote_blockers()
    if blockers and not force:
        message = "promoting now is unsafe: " + "; ".join(blockers) + " (force to override)"
        doc = {"error": {"code": "promote_unsafe", "message": message, "reasons": blockers}}
        return json_response(doc, status=409)
    if blockers:
        reason = f"forced past: {'; '.join(blockers)}" + (f" — {reason}" if reason else "")
        log.warning("promote_forced", reasons=blockers)
    await proxy.plane.change({"primary": "new"}, source=_source(request), reason=reason)
    return json_response(await status_document(request))


async def report_reset(request: web.Request) -> web.Response:
    """``POST /report/reset {"reason"?}``: a new report window everywhere (audited)."""
    body = await _json_body(request)
    await request.app[PROXY].judgement.reset_report(_reason(body), source=_source(request))
    return json_response(await report_document(request))


async def audit(request: web.Request) -> web.Response:
    limit = request.query.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise bad_request("limit must be an integer from 1 to 1000", "invalid_limit")
    return json_response({"items": await request.app[PROXY].plane.audit(int(limit))})


async def metrics(request: web.Request) -> web.Response:
    proxy = request.app[PROXY]
    text = proxy.metrics.render(proxy.plane.state, await proxy.backlog())
    return web.Response(
        body=text,
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


async def report_document(request: web.Request) -> dict[str, Any]:
    """Return ``GET /report``: every instance's comparisons merged, with the ramp."""
    proxy = request.app[PROXY]
    merged = await report_store.merged(proxy.state_db, proxy.instance, proxy.report)
    state = proxy.plane.state
    return merged.document() | {
        "ramp": {
            "primary": state.primary,
            "read_percent": state.read_percent,
            "shadow_read_percent": state.shadow_read_percent,
            "epoch": state.epoch,
        }
    }


async def report(request: web.Request) -> web.Response:
    return json_response(await report_document(request))


async def report_page(request: web.Request) -> web.Response:
    return web.Response(
        text=render_report(await report_document(request)),
        content_type="text/html",
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "img-src data:",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def start_migration(request: web.Request) -> web.Response:
    """``POST /migrate {"job": "verify" | "backfill", "repair"?: bool}``: run it here."""
    body = await _json_body(request)
    kind = body.get("job")
    if kind not in ("verify", "backfill"):
        raise unprocessable('job: must be "verify" or "backfill"')
    repair = body.get("repair", False)
    if not isinstance(repair, bool):
        raise unprocessable("repair: must be true or false")
    proxy = request.app[PROXY]
    if not proxy.holder.current.records:
        raise ApiError(409, "no_recipes", "the stores' profile says no [records.*]")
    job = proxy.migrations.start(kind, repair)
    if job is None:
        raise ApiError(409, "busy", "a migration job is running: see GET /migrate")
    return json_response({"job": job.document()}, status=202)


async def migration(request: web.Request) -> web.Response:
    """``GET /migrate``: the job running, or the last one."""
    job = request.app[PROXY].migrations.job
    return json_response({"job": job.document() if job else None})


async def healthz(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


def make_admin_app(proxy: Proxy) -> web.Application:
    """Return the admin application over ``proxy``."""
    app = web.Application(client_max_size=MAX_ADMIN_BODY, middlewares=[_errors, _auth])
    app[PROXY] = proxy
    app[console.SESSIONS] = Sessions()
    app.router.add_routes(console.routes())
    app.router.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/status", status),
            web.post("/ramp", ramp),
            web.post("/failback", failback),
            web.post("/rearm", rearm),
            web.post("/promote", promote),
            web.get("/audit", audit),
            web.get("/report", report),
            web.post("/report/reset", report_reset),
            web.get("/report.html", report_page),
            web.get("/metrics", metrics),
            web.post("/migrate", start_migration),
            web.get("/migrate", migration),
            web.get("/openapi.json", admin_openapi.serve),
        ]
    )
    return app
