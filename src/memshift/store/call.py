"""What every record operation needs to know about the request it serves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memshift.store.content import ContentStore
from memshift.store.tokens import Principal
from memshift.timestamps import format_ts, now_us


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

    def restamps(self, row: Any, data: dict[str, Any]) -> dict[str, Any]:
        """Return owner, version and timestamps after an update (an admin's values win).

        An admin repairing a copy sets them to the original's; anyone else bumps the
        version and stamps the time.
        """
        return {
            "owner": data.get("owner", row.owner),
            "version": data.get("version", row.version + 1),
            "created_at": data.get("created_at", row.created_at),
            "updated_at": data.get("updated_at", self.now),
        }


PROVENANCE = ("owner", "version", "created_at", "updated_at")


def provenance_json(row: Any) -> dict[str, Any]:
    """Return the owner, version and timestamps of a record row in API form."""
    return {
        "owner": row.owner,
        "version": row.version,
        "created_at": format_ts(row.created_at),
        "updated_at": format_ts(row.updated_at),
    }
