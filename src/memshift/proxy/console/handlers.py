"""The console's pages: sign in, the console itself, its script and style, sign out.

Everything else the console shows or does goes through the admin API, which takes a
signed-in session (with its CSRF token on every change) as it takes the bearer token;
``authorize`` is that check, used by the admin API's middleware.
"""

from __future__ import annotations

import html
from importlib import resources

from aiohttp import web

from memshift.proxy.console.sessions import COOKIE, CSRF_HEADER, Session, Sessions
from memshift.proxy.keys import PROXY

SESSIONS = web.AppKey("console_sessions", Sessions)
SOURCE = web.RequestKey("memshift_source", str)  # who acts, for the audit: admin | console
# Served without the bearer token: each does its own check (or needs none).
OPEN_PATHS = frozenset(
    {
        "/console",
        "/console/signin",
        "/console/signout",
        "/console/console.js",
        "/console/console.css",
    }
)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_STATIC = resources.files("memshift.proxy.console") / "static"


def _page(body: str, status: int = 200) -> web.Response:
    response = web.Response(
        status=status,
        content_type="text/html",
        text=(
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,"><link rel="stylesheet" href="/console/console.css">'
            f"<title>memshift console</title></head><body>{body}</body></html>"
        ),
    )
    _harden(response)
    return response


def _harden(response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"


def _sign_in_page(problem: str | None = None, status: int = 200) -> web.Response:
    said = f'<p class="problem" role="alert">{html.escape(problem)}</p>' if problem else ""
    return _page(
        '<main class="signin"><h1>memshift</h1>'
        '<form method="post" action="/console/signin">'
        '<label for="token">Admin token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" '
        "required autofocus>"
        f'<button type="submit">Sign in</button>{said}</form></main>',
        status,
    )


def authorize(request: web.Request) -> Session | None:
    """The signed-in session of ``request``, if it has a live one."""
    return request.app[SESSIONS].find(request.cookies.get(COOKIE))


def csrf_ok(request: web.Request, session: Session) -> bool:
    """Whether a change sent with ``session`` carries its CSRF token."""
    return Sessions.csrf_ok(session, request.headers.get(CSRF_HEADER))


async def console(request: web.Request) -> web.Response:
    """The console for a signed-in browser; the sign-in page for anyone else."""
    session = authorize(request)
    if session is None:
        return _sign_in_page()
    return _page(
        f'<meta name="csrf-token" content="{html.escape(session.csrf)}">'
        + (_STATIC / "console.html").read_text(encoding="utf-8")
        + '<script src="/console/console.js"></script>'
    )


async def sign_in(request: web.Request) -> web.StreamResponse:
    """``POST /console/signin`` (a form with ``token``): a session cookie, or a refusal."""
    form = await request.post()
    offered = form.get("token")
    expected = request.app[PROXY].holder.current.admin.token
    made = request.app[SESSIONS].sign_in(offered if isinstance(offered, str) else "", expected)
    if made is None:
        return _sign_in_page("That is not the admin token.", status=401)
    response = web.Response(status=303, headers={"Location": "/console"})
    response.set_cookie(
        COOKIE,
        made.id,
        max_age=int(request.app[SESSIONS].lifetime_s),
        httponly=True,
        samesite="Strict",
        path="/",
        secure=request.secure,
    )
    _harden(response)
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    """``POST /console/signout`` (with the CSRF token): the session ends."""
    session = authorize(request)
    form = await request.post()
    token = form.get("csrf") or request.headers.get(CSRF_HEADER)
    if session is None or not Sessions.csrf_ok(session, str(token) if token else None):
        return _sign_in_page("Signed out.", status=403 if session else 200)
    request.app[SESSIONS].sign_out(session.id)
    response = web.Response(status=303, headers={"Location": "/console"})
    response.del_cookie(COOKIE, path="/")
    _harden(response)
    return response


async def static(request: web.Request) -> web.Response:
    name = request.path.rsplit("/", 1)[-1]
    kind = "application/javascript" if name.endswith(".js") else "text/css"
    response = web.Response(
        text=(_STATIC / name).read_text(encoding="utf-8"), content_type=kind, charset="utf-8"
    )
    _harden(response)
    response.headers["Cache-Control"] = "no-cache"
    return response


def routes() -> list[web.RouteDef]:
    return [
        web.get("/console", console),
        web.post("/console/signin", sign_in),
        web.post("/console/signout", sign_out),
        web.get("/console/console.js", static),
        web.get("/console/console.css", static),
    ]
