"""A tool's answer as memshift keeps it: status and document, words included."""

from __future__ import annotations

from typing import Any

import pytest

from memshift.mcp import protocol
from memshift.mcp.protocol import tool_outcome


def _result(text: str, error: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
    if error:
        result["isError"] = True
    return {"jsonrpc": "2.0", "id": 1, "result": result}


@pytest.mark.parametrize(
    ("message", "outcome"),
    [
        (_result('{"id": 3}'), (200, {"id": 3})),
        (_result("Observations deleted successfully"), (200, "Observations deleted successfully")),
        (
            _result("Entity with name Alice not found", error=True),
            (422, {"error": {"code": "tool_error", "message": "Entity with name Alice not found"}}),
        ),
        (
            _result('{"error": {"code": "not_found", "status": 404}}', error=True),
            (404, {"error": {"code": "not_found", "status": 404}}),
        ),
        (
            {"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "bad"}},
            (422, {"error": {"code": -32602, "message": "bad"}}),
        ),
        (None, (502, {"error": {"code": "no_response", "message": "no JSON-RPC response"}})),
    ],
)
def test_a_tool_answer_is_kept_with_its_words(message: Any, outcome: Any) -> None:
    assert outcome == tool_outcome(message)


def test_the_versions_spoken_are_the_mcp_librarys() -> None:
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

    assert protocol.HANDSHAKE_VERSION == LATEST_HANDSHAKE_VERSION
    assert protocol.HANDSHAKE_VERSIONS == frozenset(HANDSHAKE_PROTOCOL_VERSIONS)
