"""The hot folder's working state in the records: which files of a watched folder were seen, and what became
of each (schema version 6, ``watched_files``).

A file is known by its folder, name, size and modification time (ns): a camera that reuses a name writes a new
part, which is a new row. Rows change state (queued -> done, dropped, error) and are not chained in the ledger;
the inspections they point to are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from anomalyapp.core.errors import StoreError
from anomalyapp.store.rows import from_ms, now_utc, to_ms

WATCH_STATES = ("queued", "done", "skipped", "dropped", "error")
_COLUMNS = "id, folder, name, size, mtime_ns, state, reason, inspection_id, seen_at, updated_at"


@dataclass(frozen=True)
class WatchedFile:
    id: int
    folder: str
    name: str
    size: int
    mtime_ns: int
    state: str
    reason: str | None
    inspection_id: int | None
    seen_at: datetime
    updated_at: datetime

    @property
    def key(self) -> tuple[str, int, int]:
        return self.name, self.size, self.mtime_ns


def _watched(row) -> WatchedFile:
    return WatchedFile(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], from_ms(row[8]), from_ms(row[9]))


def _check_state(state: str) -> None:
    if state not in WATCH_STATES:
        raise StoreError(f"unknown watched-file state {state!r} (use {', '.join(WATCH_STATES)})")


class WatchedFileRecords:
    """``RecordStore``'s watched files."""

    def add_watched_file(self, folder: str, name: str, size: int, mtime_ns: int, state: str,
                         reason: str | None = None) -> WatchedFile:
        _check_state(state)
        now = to_ms(now_utc())
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO watched_files (folder, name, size, mtime_ns, state, reason, inspection_id, seen_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                (str(folder), name, int(size), int(mtime_ns), state, reason, now, now))
            row = conn.execute(f"SELECT {_COLUMNS} FROM watched_files WHERE id = ?", (cursor.lastrowid,)).fetchone()
        return _watched(row)

    def set_watched_state(self, watched_id: int, state: str, reason: str | None = None,
                          inspection_id: int | None = None) -> None:
        """Change a watched file's state (in the caller's transaction when there is one)."""
        _check_state(state)
        with self._transaction() as conn:
            changed = conn.execute(
                "UPDATE watched_files SET state = ?, reason = ?, inspection_id = ?, updated_at = ? WHERE id = ?",
                (state, reason, inspection_id, to_ms(now_utc()), watched_id)).rowcount
            if not changed:
                raise StoreError(f"no watched file {watched_id} in {self.path}")

    def watched_file_state(self, folder: str, name: str, size: int, mtime_ns: int) -> tuple[str, str | None] | None:
        """(state, verdict of its inspection or None) of this file (this name, size and modification time) of
        the folder, or None when it has no row yet."""
        row = self._read(lambda c: c.execute(
            "SELECT w.state, i.verdict FROM watched_files AS w LEFT JOIN inspections AS i ON i.id = w.inspection_id "
            "WHERE w.folder = ? AND w.name = ? AND w.size = ? AND w.mtime_ns = ? ORDER BY w.id DESC LIMIT 1",
            (str(folder), name, int(size), int(mtime_ns))).fetchone())
        return (row[0], row[1]) if row else None

    def watched_files(self, folder: str, state: str | None = None) -> list[WatchedFile]:
        """The folder's watched files in the order they were seen (optionally of one state)."""
        if state is not None:
            _check_state(state)
        sql = f"SELECT {_COLUMNS} FROM watched_files WHERE folder = ?" + (" AND state = ?" if state else "") + " ORDER BY id"
        params = (str(folder), state) if state else (str(folder),)
        return [_watched(row) for row in self._read(lambda c: c.execute(sql, params).fetchall())]
