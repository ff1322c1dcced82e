"""What backfill does with a record, given the write log around its read."""

from __future__ import annotations

import io

from memshift.migrate.fence import Pending, moot, verdict
from memshift.migrate.progress import Progress, eta_text

KEY = "memory:7"
NONE: frozenset[int] = frozenset()


def p(id_: int, state: str, key: str | None = KEY, creates: bool = False) -> Pending:
    return Pending(id_, state, key, creates)


def test_a_record_without_unfinished_writes_is_copied() -> None:
    assert ("copy", ()) == verdict(KEY, [], [p(1, "backlog", "memory:8")], NONE)


def test_a_record_whose_create_is_on_its_way_is_left_to_the_mirror() -> None:
    assert "mirror" == verdict(KEY, [], [p(1, "accepted", creates=True)], NONE)[0]


def test_backlog_writes_applied_before_the_read_are_taken_over() -> None:
    before = [p(1, "backlog"), p(2, "accepted")]
    after = [p(1, "backlog"), p(2, "backlog")]
    assert ("adopt", (1, 2)) == verdict(KEY, before, after, NONE)


def test_a_write_that_may_have_landed_after_the_read_defers_the_record() -> None:
    # logged between the two looks: legacy may have applied it before or after the read
    assert "in_flight" == verdict(KEY, [], [p(3, "backlog")], NONE)[0]
    assert "in_flight" == verdict(KEY, [p(3, "intent")], [p(3, "backlog")], NONE)[0]
    assert "in_flight" == verdict(KEY, [p(3, "backlog")], [p(3, "accepted")], NONE)[0]


def test_an_unanswered_create_defers_everything_it_might_have_made() -> None:
    assert "in_flight" == verdict(KEY, [], [], frozenset({9}))[0]


def test_writes_of_a_record_gone_from_both_stores_are_moot_once_settled() -> None:
    before = [p(1, "backlog", creates=True), p(2, "backlog")]
    assert (1, 2) == moot(KEY, before, before, NONE)
    assert () == moot(KEY, before[:1], before, NONE)  # the delete may be moving still


def test_progress_shows_rate_and_time_left() -> None:
    out = io.StringIO()
    progress = Progress("backfill", 1000, out, tty=True)
    progress.started -= 10  # as if it began ten seconds ago
    progress.advance(250, "memory")
    assert "backfill: 250/1000 (25%) memory, 25/s, ETA 30 s" in out.getvalue()
    assert "2 min 05 s" == eta_text(125)
    assert "1 h 01 min" == eta_text(3660)
