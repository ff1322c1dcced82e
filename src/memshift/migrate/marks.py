"""What a migration leaves in the state db for the proxy: that a copy was completed.

Until a backfill (or a repair) has completed, a record the new store lacks is expected:
the proxy reports reads of it as *pending*, not as differences. A backfill that
completes, or a repair after which both stores agree, marks it (``BACKFILLED``).
"""

from __future__ import annotations

from sqlalchemy import Connection

from memshift.database import Database
from memshift.statedb import save_doc
from memshift.timestamps import now_us

BACKFILLED = "backfill.done"


def note_backfilled(conn: Connection) -> None:
    """Mark, in a transaction of the caller's, that the stores were made to agree."""
    save_doc(conn, BACKFILLED, {"at": now_us()})


async def mark_backfilled(db: Database) -> None:
    """Mark that the stores were made to agree."""
    await db.write(note_backfilled)
