"""Search terms and snippets, the parts of search that are pure functions."""

from __future__ import annotations

from memshift.store.search import SNIPPET_CHARS, snippet, terms_of


def test_terms_split_words_case_and_underscores() -> None:
    """Terms are lower-case words; underscores split; one-letter words are left out."""
    assert {"read": 2, "blob": 1, "zstd": 1, "ünïcode": 1} == dict(
        terms_of("read_blob READ a zstd Ünïcode!")
    )


def test_snippet_centres_on_the_first_hit() -> None:
    """A snippet shows text around the first query term and marks cuts."""
    text = "lorem " * 100 + "the needle is here " + "ipsum " * 100
    cut = snippet(text, "needle")
    assert "needle is here" in cut
    assert cut.startswith("…") and cut.endswith("…")
    assert len(cut) <= SNIPPET_CHARS + 2


def test_snippet_without_hit_starts_at_the_beginning() -> None:
    """When only the title matched, the snippet is the start of the content."""
    assert "short text" == snippet("short   text", "title")
