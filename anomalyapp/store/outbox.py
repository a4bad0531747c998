"""The outbox: verdicts waiting to be sent to the line, one row per verdict and sink (schema version 5).

A row is written when a verdict is submitted and marked sent once its sink confirmed delivery. Each sink
sends its rows in ``id`` order and does not pass a row that failed: the next try is that same row. Rows sent
more than ``KEEP_SENT_DAYS`` ago are pruned. The outbox is a queue, not a record: it is outside the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from anomalyapp.store.rows import from_ms, now_utc, to_ms

KEEP_SENT_DAYS = 7


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    sink: str
    message_id: str
    payload: str
    attempts: int


@dataclass(frozen=True)
class OutboxState:
    """One sink's queue: how many rows wait, the newest error of the one at the head, the last delivery."""

    sink: str
    backlog: int
    last_error: str | None
    last_sent_at: datetime | None


class OutboxRecords:
    """``RecordStore``'s outbox."""

    def enqueue_line_messages(self, sinks, make_payload) -> int | None:
        """One row per sink in ``sinks``, all in one transaction; ``make_payload(sequence)`` gives the payload
        (sequence: the first row's id, rising with every verdict). Returns the sequence (None: no sinks)."""
        sinks = list(sinks)
        if not sinks:
            return None
        at = to_ms(now_utc())
        with self._transaction() as conn:
            # Under the write lock, AUTOINCREMENT's next id is the sequence's last value plus one.
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            sequence = (row[0] if row else 0) + 1
            message_id, payload = make_payload(sequence)
            conn.executemany(
                "INSERT INTO outbox (sink, message_id, payload, created_at) VALUES (?, ?, ?, ?)",
                [(sink, message_id, payload, at) for sink in sinks])
        return sequence

    def pending_line_messages(self, sink: str, limit: int = 50) -> list[OutboxMessage]:
        """The oldest unsent rows of ``sink``, in sending order."""
        rows = self._read(lambda c: c.execute(
            "SELECT id, sink, message_id, payload, attempts FROM outbox WHERE sink = ? AND sent_at IS NULL "
            "ORDER BY id LIMIT ?", (sink, limit)).fetchall())
        return [OutboxMessage(*row) for row in rows]

    def mark_line_messages_sent(self, row_ids) -> None:
        """Mark these rows delivered, in one transaction (a sender marks what it sent in batches: one durable
        write per message would cap a sink at the disk's sync rate)."""
        at = to_ms(now_utc())
        with self._transaction() as conn:
            conn.executemany("UPDATE outbox SET sent_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
                             [(at, row_id) for row_id in row_ids])

    def mark_line_message_failed(self, row_id: int, error: str) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                         (error[:500], row_id))

    def outbox_state(self, sink: str) -> OutboxState:
        def read(conn):
            backlog = conn.execute("SELECT count(*) FROM outbox WHERE sink = ? AND sent_at IS NULL",
                                   (sink,)).fetchone()[0]
            head = conn.execute("SELECT last_error FROM outbox WHERE sink = ? AND sent_at IS NULL ORDER BY id LIMIT 1",
                                (sink,)).fetchone()
            sent = conn.execute("SELECT max(sent_at) FROM outbox WHERE sink = ? AND sent_at IS NOT NULL",
                                (sink,)).fetchone()[0]
            return OutboxState(sink, backlog, head[0] if head else None, from_ms(sent) if sent is not None else None)

        return self._read(read)

    def prune_sent_line_messages(self, keep_days: float = KEEP_SENT_DAYS) -> int:
        cutoff = to_ms(now_utc()) - int(keep_days * 86_400_000)
        with self._transaction() as conn:
            return conn.execute("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?", (cutoff,)).rowcount
