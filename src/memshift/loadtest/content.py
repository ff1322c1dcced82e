"""Contents and search terms of a load test, cut from real text.

Text generated from a small vocabulary compresses far better than what users store
and would flatter the new engine, so contents are slices of real prose and code: the
license texts a Debian system carries and the Python standard library's own sources.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import sysconfig
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

CORPUS_BYTES = 4_000_000
_WORD = re.compile(r"[A-Za-z]{5,12}")
# Enough different text that two contents of 100 KB rarely share much.
_FALLBACK_WORDS = [
    "memory",
    "context",
    "relation",
    "search",
    "store",
    "legacy",
    "migrate",
    "shadow",
    "mirror",
    "replay",
    "record",
    "version",
    "content",
    "title",
    "owner",
    "access",
    "public",
    "private",
    "compress",
    "chunk",
    "verify",
    "repair",
]


def _python_files(root: Path) -> Iterator[Path]:
    """``sorted(root.rglob("*.py"))``, lazily: only what is read is listed."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _python_files(Path(entry.path))
        elif entry.name.endswith(".py"):
            yield Path(entry.path)


def real_text(limit: int) -> str:
    """Real text from this machine, in a fixed order: license texts, then the standard
    library's sources (its tests left out), until about ``limit`` characters."""
    parts: list[str] = []
    size = 0
    licenses = sorted(Path("/usr/share/common-licenses").glob("*"))
    stdlib = _python_files(Path(sysconfig.get_paths()["stdlib"]))
    for path in itertools.chain(licenses, stdlib):
        if not path.is_file() or "test" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        parts.append(text)
        size += len(text)
        if size >= limit:
            break
    return "\n".join(parts)


class Corpus:
    """Real text to cut contents from, and words to search for."""

    def __init__(self, text: str, terms: list[str]) -> None:
        self.text = text
        self.terms = terms

    @classmethod
    def load(cls, limit: int = CORPUS_BYTES) -> Corpus:
        """Read real text from this machine; made-up text where there is none."""
        text = real_text(limit)
        if len(text) < 2 * 100_000:
            rnd = random.Random(1)
            text += "\n" + " ".join(rnd.choice(_FALLBACK_WORDS) for _ in range(60_000))
        counts = Counter(w.lower() for w in _WORD.findall(text))
        # Terms a user might look for: frequent enough to match, not the commonest.
        ranked = [w for w, _ in counts.most_common(600)]
        return cls(text, ranked[100:] or ranked)

    def content(self, size: int, rnd: random.Random) -> str:
        """Return ``size`` characters of text from a random place (repeated if short)."""
        text = self.text
        while len(text) <= size:
            text += "\n" + text
        start = rnd.randrange(0, len(text) - size)
        return text[start : start + size]

    def term(self, rnd: random.Random) -> str:
        """Return a word to search for."""
        return rnd.choice(self.terms)
