"""The ramp schedule: ``[[routing.steps]]`` taken one by one, only on healthy evidence.

To leave a step, the new store must have been judged healthy for that step's
``hold_s`` (from the start, for one healthy verdict). Time judged inconclusive pauses
the clock without counting; a failback stops the schedule (the latch holds it). Every
instance may advance it: the shared control state, versioned by its epoch, settles it.
"""

from __future__ import annotations

from dataclasses import dataclass

from memshift.config.settings import Step


@dataclass
class Schedule:
    """Healthy time accumulated at the current read percent."""

    healthy_s: float = 0.0
    at_percent: int | None = None

    def tick(
        self, steps: tuple[Step, ...], read_percent: int, verdict: str, seconds: float
    ) -> Step | None:
        """Account one tick of ``seconds``; return the step to move to, if it is time."""
        if read_percent != self.at_percent:
            self.at_percent, self.healthy_s = read_percent, 0.0
        upcoming = [s for s in steps if s.read_percent > read_percent]
        if not upcoming:
            return None
        if verdict == "healthy":
            self.healthy_s += seconds
        held = [s.hold_s for s in steps if s.read_percent == read_percent]
        needed = held[0] if held else 0.0
        if verdict == "healthy" and self.healthy_s >= needed:
            return upcoming[0]
        return None
