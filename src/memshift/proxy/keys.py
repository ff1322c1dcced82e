"""The typed keys under which the proxy's aiohttp applications keep their proxy instance."""

from __future__ import annotations

from aiohttp import web

from memshift.proxy.instance import Proxy

PROXY = web.AppKey("proxy", Proxy)
