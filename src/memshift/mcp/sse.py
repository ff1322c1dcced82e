"""Server-sent events, split incrementally: any line ending, cut at any byte, in linear time.

A store's SSE answer arrives in chunks cut wherever the network cut it. Lines end in
``\\r\\n``, ``\\n`` or ``\\r`` (all three are allowed, even mixed), and a ``\\r\\n`` may
be split across two chunks: a ``\\r`` at the end of a chunk is held until the next
byte says whether a ``\\n`` belongs to it. An event ends at an empty line.

Each byte is looked at a bounded number of times, whatever the event's size, and the
buffer is trimmed once per chunk, so splitting costs time linear in the stream. An
event is kept with its raw bytes (relayed as they came when nothing in it changes)
and the JSON-RPC message its ``data`` lines carry. An event without data (a comment
sent as a keep-alive) is an event too, so that it reaches the client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

_LINE_END = re.compile(rb"\r\n|\r|\n")
LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class Event:
    """One SSE event as it came: its raw bytes, its fields, and the message it carries."""

    raw: bytes
    data: bytes | None  # the data lines joined with \n; None when there are none
    name: str = "message"
    id: str | None = None

    @property
    def message(self) -> Any:
        """The JSON its data holds, or None."""
        if self.data is None:
            return None
        try:
            return orjson.loads(self.data)
        except orjson.JSONDecodeError:
            return None


class SseSplitter:
    """Splits an SSE byte stream into events as the bytes arrive."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._buffer = bytearray()
        self._scan = 0  # where the search for the next line ending goes on
        self._line_start = 0  # where the current line begins
        self._event_start = 0  # where the current event's bytes begin
        self._lines: list[bytes] = []  # the current event's lines so far
        self._limit = limit

    def feed(self, chunk: bytes) -> list[Event]:
        """Return the events ``chunk`` completes; raise ValueError past the size limit."""
        buffer = self._buffer
        buffer += chunk
        events: list[Event] = []
        while True:
            found = _LINE_END.search(buffer, self._scan)
            if found is None:
                self._scan = len(buffer)
                break
            if found.end() == len(buffer) and found.group() == b"\r":
                self._scan = found.start()  # a \n may follow in the next chunk
                break
            line = bytes(buffer[self._line_start : found.start()])
            self._scan = self._line_start = found.end()
            if line:
                self._lines.append(line)
                continue
            if self._lines:
                events.append(self._event(bytes(buffer[self._event_start : found.end()])))
            self._event_start = found.end()
        if len(buffer) - self._event_start > self._limit:
            raise ValueError("an SSE event is larger than the limit")
        if self._event_start:
            cut = self._event_start
            del buffer[:cut]
            self._scan -= cut
            self._line_start -= cut
            self._event_start = 0
        return events

    def _event(self, raw: bytes) -> Event:
        lines, self._lines = self._lines, []
        data: list[bytes] = []
        fields: dict[bytes, bytes] = {}
        for line in lines:
            if line.startswith(b":"):
                continue  # a comment
            name, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if name == b"data":
                data.append(value)
            else:
                fields[name] = value
        return Event(
            raw=raw,
            data=b"\n".join(data) if data else None,
            name=fields.get(b"event", b"message").decode("utf-8", "replace") or "message",
            id=fields[b"id"].decode("utf-8", "replace") if b"id" in fields else None,
        )

    def rest(self) -> bytes:
        """Return the bytes after the last complete event (a stream cut short)."""
        return bytes(self._buffer)


def encode(message: Any, like: Event | None = None) -> bytes:
    """Return an event carrying ``message``, with ``like``'s name and id."""
    head = b""
    if like is not None:
        if like.name != "message":
            head += b"event: " + like.name.encode() + b"\n"
        if like.id is not None:
            head += b"id: " + like.id.encode() + b"\n"
    else:
        head = b"event: message\n"
    return head + b"data: " + orjson.dumps(message) + b"\n\n"


def events(body: bytes) -> list[Event]:
    """Return every event of a whole SSE answer (a last one without its blank line too)."""
    splitter = SseSplitter()
    found = splitter.feed(body)
    rest = splitter.rest()
    if rest.strip():
        found += splitter.feed(b"\n\n")
    return found
