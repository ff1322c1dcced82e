"""Listen addresses (``HOST:PORT``), as given on the command line and in config files."""

from __future__ import annotations

from memshift.errors import ConfigError


def parse_listen(text: str, key: str = "listen") -> tuple[str, int]:
    """Return ``(host, port)`` of ``HOST:PORT`` (``[v6]:PORT`` too); raise ``ConfigError``."""
    host, sep, port = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, f"must be HOST:PORT with a port 0..65535, not {text!r}")
    return host, int(port)
