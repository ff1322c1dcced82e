"""The proxy's MCP endpoint fuzzed with what JSON-RPC clients get wrong.

hypothesis sends the proxy (``memshift serve`` before two reference stores, each a
process, on SQLite and PostgreSQL) malformed JSON, JSON that is not JSON-RPC, batches,
unknown and known methods with params of any shape (huge and deeply nested ones among
them), ids of every type, and session ids that are missing, forged or live (one a
DELETE may end). Every request must be answered, within its timeout, below 500; an
answer with a JSON body is a JSON-RPC message or a JSON error. Size:
``MEMSHIFT_FUZZ_EXAMPLES`` x 10 examples per database (120 by default).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memshift.mcp import protocol
from tests.conformance.proxyproc import ProxyProcess
from tests.fuzz.targets import FUZZ_EXAMPLES, Found
from tests.proxy.conftest import auth

pytestmark = pytest.mark.slow  # run by .ci/run after the default run
VERSIONS = ["2024-11-05", "2025-03-26", "2025-06-18", "2026-07-28", "1999-01-01", ""]
METHODS = [
    "initialize",
    "notifications/initialized",
    "tools/list",
    "tools/call",
    "ping",
    "resources/list",
    "prompts/get",
    "notifications/cancelled",
]
TOOLS = ["create_memory", "get_memory", "search_memories", "update_memory", "delete_memory"]
FOUND = Found()

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
ids = st.none() | st.integers() | st.text(max_size=20) | st.floats(allow_nan=False) | json_values
params = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"name": st.sampled_from(TOOLS) | st.text(max_size=300), "arguments": json_values}
    ),
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(TOOLS),
            "arguments": st.fixed_dictionaries(
                {"title": st.text(max_size=5), "content": st.just("x" * 200_000)}
            ),
        }
    ),
    st.integers(1, 120).map(lambda depth: json.loads("[" * depth + "]" * depth)),
)
messages = st.fixed_dictionaries(
    {
        "jsonrpc": st.sampled_from(["2.0", "1.0"]) | scalars,
        "method": st.sampled_from(METHODS) | scalars,
    },
    optional={"id": ids, "params": params},
)
bodies = st.one_of(
    messages.map(lambda m: json.dumps(m).encode()),
    st.lists(messages, max_size=3).map(lambda m: json.dumps(m).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.just(b'{"jsonrpc": "2.0", "method": "tools/call", "id": 1, "params": '),
)
sessions = st.none() | st.text(alphabet="0123456789abcdef", max_size=40) | st.just("live")
_LIVE: dict[str, str] = {}  # proxy base URL: a session opened there


def _live_session(base: str) -> str:
    """A session the proxy knows, opened once per proxy."""
    if base not in _LIVE:
        init = protocol.initialize_request("1", "2025-06-18")
        headers = {**auth("user1"), "Accept": "application/json, text/event-stream"}
        answer = requests.post(base + "/mcp", json=init, headers=headers, timeout=20)
        assert 200 == answer.status_code, answer.text
        _LIVE[base] = answer.headers["Mcp-Session-Id"]
    return _LIVE[base]


@settings(
    max_examples=FUZZ_EXAMPLES * 10,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@given(
    body=bodies,
    method=st.sampled_from(["POST", "POST", "POST", "GET", "DELETE", "PUT"]),
    session=sessions,
    version=st.sampled_from(VERSIONS),
    accept=st.sampled_from(["application/json, text/event-stream", "application/json", "*/*", ""]),
)
def test_no_message_gets_a_5xx_or_hangs(
    proxied: ProxyProcess, body: bytes, method: str, session: str | None, version: str, accept: str
) -> None:
    """Answered, in time, below 500, in JSON where it has a JSON body."""
    headers: dict[str, str] = {**auth("user1"), "Content-Type": "application/json"}
    if accept:
        headers["Accept"] = accept
    if version:
        headers["MCP-Protocol-Version"] = version
    if session is not None:
        headers["Mcp-Session-Id"] = _live_session(proxied.base) if session == "live" else session
    url = proxied.base + "/mcp"
    stream = method == "GET"
    try:
        answer = requests.request(
            method, url, data=body, headers=headers, timeout=(5, 20), stream=stream
        )
    except requests.exceptions.ReadTimeout:
        if not stream:
            raise
        return  # a standalone GET stream stays open by design: it answered its headers
    with answer:
        FOUND.count(answer.status_code)
        assert answer.status_code < 500, (answer.status_code, answer.text[:500])
        kind = answer.headers.get("Content-Type", "")
        if kind.startswith("application/json") and not stream:
            doc: Any = answer.json()
            assert isinstance(doc, dict | list), doc
            if isinstance(doc, dict):
                assert "jsonrpc" in doc or "error" in doc, doc


def test_the_proxy_is_whole_after_the_mcp_fuzz(proxied: ProxyProcess) -> None:
    """After the fuzz, the proxy still serves, and it gave no 5xx."""
    answer = requests.get(proxied.base + "/v1/stats", headers=auth("user1"), timeout=10)
    assert 200 == answer.status_code
    print(f"mcp fuzz: {FOUND.summary()}")
    assert 0 == FOUND.server_errors
