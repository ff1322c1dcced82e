"""The SSE splitter: every line ending, cut at every byte, in linear work."""

from __future__ import annotations

import re
from typing import Any

import pytest

from memshift.mcp import sse
from memshift.mcp.sse import SseSplitter

# A stream as stores send it: CRLF, LF and CR endings, a comment, an event name and id,
# multi-line data, and an event whose blank line is CR LF split by the cut.
RECORDED = (
    b": keep-alive\r\n\r\n"
    b'event: message\r\nid: 1\r\ndata: {"jsonrpc":"2.0","method":"notifications/progress"}\r\n\r\n'
    b'data: {"jsonrpc":"2.0",\r\ndata: "id":"m-1","result":{}}\n\n'
    b"event: other\rdata: plain text\r\r"
    b"data:no-space\n\n"
)
EXPECTED = [
    ("message", None, None),  # a keep-alive comment: relayed like any event
    ("message", "1", b'{"jsonrpc":"2.0","method":"notifications/progress"}'),
    ("message", None, b'{"jsonrpc":"2.0",\n"id":"m-1","result":{}}'),
    ("other", None, b"plain text"),
    ("message", None, b"no-space"),
]


def _seen(events: list[sse.Event]) -> list[tuple[str, str | None, bytes | None]]:
    return [(e.name, e.id, e.data) for e in events]


def test_a_recorded_stream_cut_at_every_offset_gives_the_same_events() -> None:
    """However the network cuts the stream, in one place or two, the events are the same."""
    for first in range(len(RECORDED) + 1):
        for second in range(first, len(RECORDED) + 1):
            splitter = SseSplitter()
            found = [
                *splitter.feed(RECORDED[:first]),
                *splitter.feed(RECORDED[first:second]),
                *splitter.feed(RECORDED[second:]),
            ]
            assert EXPECTED == _seen(found), (first, second)
            assert RECORDED == b"".join(e.raw for e in found)
            assert b"" == splitter.rest()


def test_byte_by_byte_and_the_messages() -> None:
    """Fed one byte at a time; the JSON-RPC message of each event is parsed."""
    splitter = SseSplitter()
    found = [event for i in range(len(RECORDED)) for event in splitter.feed(RECORDED[i : i + 1])]
    assert EXPECTED == _seen(found)
    assert {"jsonrpc": "2.0", "id": "m-1", "result": {}} == found[2].message
    assert found[3].message is None  # not JSON


class _Counting:
    """The line-ending pattern, counting the bytes each search looks at."""

    def __init__(self) -> None:
        self.looked = 0

    def search(self, buffer: Any, pos: int) -> re.Match[bytes] | None:
        found = re.compile(rb"\r\n|\r|\n").search(buffer, pos)
        self.looked += (found.end() if found else len(buffer)) - pos
        return found


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_work_is_linear_in_the_stream(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """A 1 MiB event cut in small chunks is looked at about once, not once per chunk."""
    counting = _Counting()
    monkeypatch.setattr(sse, "_LINE_END", counting)
    stream = b"data: " + b"x" * (1 << 20) + b"\r\n\r\n" + b"data: y\n\n" * 1000
    splitter = SseSplitter()
    found = [
        e for at in range(0, len(stream), chunk) for e in splitter.feed(stream[at : at + chunk])
    ]
    assert 1001 == len(found)
    assert counting.looked <= 2 * len(stream)


def test_an_event_over_the_limit_is_refused() -> None:
    """An event larger than the limit raises instead of growing without bound."""
    splitter = SseSplitter(limit=1024)
    with pytest.raises(ValueError, match="limit"):
        splitter.feed(b"data: " + b"x" * 2048)


def test_encode_keeps_the_event_name_and_id() -> None:
    """A rewritten event keeps the fields of the one it replaces."""
    [event] = SseSplitter().feed(b"event: message\nid: 9\ndata: {}\n\n")
    assert b'id: 9\ndata: {"a":1}\n\n' == sse.encode({"a": 1}, event)
    assert b'event: message\ndata: {"a":1}\n\n' == sse.encode({"a": 1})
