"""What every record operation needs to know about the request it serves."""

from __future__ import annotations

from dataclasses import dataclass, field

from memshift.store.content import ContentStore
from memshift.store.timestamps import now_us
from memshift.store.tokens import Principal


@dataclass(frozen=True)
class Call:
    """The caller, the engine's content store, and one clock reading for the whole call."""

    who: Principal
    content: ContentStore
    now: int = field(default_factory=now_us)

    def stamps(self, data: dict[str, object]) -> dict[str, object]:
        """Return owner, version and timestamps for a new record (an admin's values win)."""
        created = data.get("created_at", self.now)
        return {
            "owner": data.get("owner", self.who.user),
            "version": data.get("version", 1),
            "created_at": created,
            "updated_at": data.get("updated_at", created),
        }
