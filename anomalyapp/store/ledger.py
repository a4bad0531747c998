"""The records' hash chain checked: ``LedgerReport`` and ``RecordStore.verify_ledger``."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from anomalyapp.core.errors import StoreError
from anomalyapp.store import schema


@dataclass(frozen=True)
class LedgerReport:
    """What ``RecordStore.verify_ledger`` found. Rows are (table, key) pairs, keys as text.

    ``full`` False is the quick check (the triggers and the newest ledger entries only): it cannot see an
    edited row whose trigger was put back, so ``intact`` then means "nothing found so far".
    """

    entries: int  # ledger entries
    head_sha256: str | None  # the newest entry's hash (hex): kept elsewhere, it vouches for the whole chain
    rows_checked: int = 0
    full: bool = True
    edited: tuple[tuple[str, str], ...] = ()  # content differs from what the app last wrote
    deleted: tuple[tuple[str, str], ...] = ()  # in the ledger, gone from its table
    unrecorded: tuple[tuple[str, str], ...] = ()  # no ledger entry: inserted outside the app
    chain_breaks: tuple[int, ...] = ()  # entries whose hash does not follow from the entry before
    missing_entries: tuple[tuple[int, int], ...] = ()  # (first, last) ranges of ledger entries removed
    triggers_dropped: tuple[str, ...] = ()
    triggers_changed: tuple[str, ...] = ()
    triggers_added: tuple[str, ...] = ()

    @property
    def intact(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        """One line per kind of tampering found, naming the rows, entries or triggers (the first 20 of each)."""
        lines = []
        for rows, what in ((self.edited, "edited outside the app"), (self.deleted, "deleted outside the app"),
                           (self.unrecorded, "inserted outside the app (no ledger entry)")):
            if rows:
                lines.append(f"{len(rows)} row(s) {what}: {_listed([f'{table} {key}' for table, key in rows])}")
        if self.chain_breaks:
            lines.append(f"ledger chain broken at entry {_listed([str(n) for n in self.chain_breaks])}")
        if self.missing_entries:
            ranges = [str(a) if a == b else f"{a}-{b}" for a, b in self.missing_entries]
            lines.append(f"ledger entries removed: {_listed(ranges)}")
        for names, what in ((self.triggers_dropped, "dropped"), (self.triggers_changed, "changed"),
                            (self.triggers_added, "added outside the app")):
            if names:
                lines.append(f"trigger(s) {what}: {_listed(list(names))}")
        return lines


def _listed(items: list[str], most: int = 20) -> str:
    more = f" and {len(items) - most} more" if len(items) > most else ""
    return ", ".join(items[:most]) + more


def _key_order(row: tuple[str, str]):
    table, key = row
    return (list(schema.LEDGER_TABLES).index(table) if table in schema.LEDGER_TABLES else 99, not key.isdigit(),
            int(key) if key.isdigit() else 0, key)



_NOT_RECORDED = object()


class LedgerRecords:
    """``RecordStore``'s ledger verification."""

    # -- ledger -----------------------------------------------------------------------------------

    def verify_ledger(self, *, full: bool = True, tail: int = 1000) -> LedgerReport:
        """Check the records against their hash chain (schema version 4), in one consistent read.

        Full: every ledger entry's hash is recomputed from the entry before it, and every row of every
        chained table is hashed and compared with its newest ledger entry (edited, deleted, inserted outside
        the app). Quick (``full=False``): the triggers, the ledger's numbering and its last ``tail`` entries.
        """
        conn = self._connection()
        own = not conn.in_transaction
        try:
            if own:
                conn.execute("BEGIN")  # a snapshot: the app may be writing meanwhile
            try:
                return self._verify_ledger(conn, full, tail)
            finally:
                if own:
                    conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot check records database {self.path}: {exc}") from None

    def _verify_ledger(self, conn, full: bool, tail: int) -> LedgerReport:
        expected = schema.expected_triggers()
        present = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall())
        dropped = tuple(sorted(set(expected) - set(present)))
        changed = tuple(sorted(name for name in expected if name in present and present[name] != expected[name]))
        added = tuple(sorted(set(present) - set(expected)))

        newest = conn.execute("SELECT max(id) FROM ledger").fetchone()[0] or 0
        sequence = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'ledger'").fetchone()
        start = 1 if full else max(1, newest - tail + 1)
        row = conn.execute("SELECT entry_sha256 FROM ledger WHERE id < ? ORDER BY id DESC LIMIT 1", (start,)).fetchone()
        previous = row[0] if row else None
        next_id, breaks, missing, entries, latest = start, [], [], 0, {}
        if not full:  # the numbering before the tail: count against the ids
            count = conn.execute("SELECT count(*) FROM ledger WHERE id < ?", (start,)).fetchone()[0]
            if count != start - 1:
                missing.append((1, start - 1))  # somewhere in there; the full check says where
            entries = count
        chain = schema.chain_sha256
        for id_, table, key, row_hash, entry in conn.execute(
                "SELECT id, table_name, row_key, row_sha256, entry_sha256 FROM ledger WHERE id >= ? ORDER BY id",
                (start,)):
            entries += 1
            if id_ != next_id:
                missing.append((next_id, id_ - 1))
            if chain(previous, table, key, row_hash) != entry:
                breaks.append(id_)
            previous, next_id = entry, id_ + 1
            latest[(table, key)] = row_hash
        last_issued = sequence[0] if sequence else 0
        if last_issued >= next_id:  # the newest entries were removed
            missing.append((next_id, last_issued))

        edited, deleted, unrecorded, rows_checked = [], [], [], 0
        if not full:  # the newest row of each table must have an entry (a row added by another tool has none)
            newest_chained = dict(conn.execute(
                "SELECT table_name, max(CAST(row_key AS INTEGER)) FROM ledger WHERE table_name <> 'settings' "
                "GROUP BY table_name").fetchall())
            for table in schema.LEDGER_TABLES:
                if table != "settings":
                    newest_row = conn.execute(f"SELECT max(id) FROM {table}").fetchone()[0]
                    if newest_row is not None and newest_row > (newest_chained.get(table) or 0):
                        unrecorded.append((table, str(newest_row)))
        else:
            row_hash_of = schema.row_sha256
            for table, columns in schema.LEDGER_TABLES.items():
                for values in conn.execute(f"SELECT {', '.join(columns)} FROM {table}"):
                    rows_checked += 1
                    key = str(values[0])
                    recorded = latest.pop((table, key), _NOT_RECORDED)
                    if recorded is _NOT_RECORDED or recorded is None:  # None: deleted by the app, yet here
                        unrecorded.append((table, key))
                    elif recorded != row_hash_of(table, *values):
                        edited.append((table, key))
            deleted = [row for row, recorded in latest.items() if recorded is not None]
        return LedgerReport(
            entries=entries, head_sha256=previous.hex() if previous else None, rows_checked=rows_checked, full=full,
            edited=tuple(sorted(edited, key=_key_order)), deleted=tuple(sorted(deleted, key=_key_order)),
            unrecorded=tuple(sorted(unrecorded, key=_key_order)), chain_breaks=tuple(breaks),
            missing_entries=tuple(missing), triggers_dropped=dropped, triggers_changed=changed, triggers_added=added,
        )
