"""The records of a project: inspections, labels, users, model versions, settings and the audit log.

One SQLite file per project (``<project>/records.sqlite3``), read and written only through ``RecordStore``.

Durability: WAL journal with ``synchronous=FULL``, so a decision that has returned from its call is on disk
and survives a kill -9 or a power cut. Every decision (a label, a user change, a setting, a model version)
is written in one ``BEGIN IMMEDIATE`` transaction together with its audit entry: both or neither.
Inspections themselves are the record of what the machine judged and carry no audit entry of their own.

Threads: the GUI records from worker threads, so each thread gets its own connection (thread-local),
opened on first use; ``close()`` closes them all.

Times: stored as UTC milliseconds since the epoch; returned as timezone-aware UTC ``datetime``. A naive
``datetime`` given in a query is local time, and a ``date`` means that whole local calendar day.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from anomalyapp.core.errors import StoreError
from anomalyapp.store import schema
from anomalyapp.store.accounts import AccountRecords
from anomalyapp.store.inspections import InspectionRecords
from anomalyapp.store.ledger import LedgerRecords, LedgerReport
from anomalyapp.store.outbox import OutboxRecords
from anomalyapp.store.rows import (
    LABEL_FILTERS,
    LABELS,
    ORDERS,
    ROLES,
    VERDICTS,
    AuditEntry,
    InspectionQuery,
    InspectionRecord,
    LabelRecord,
    ModelVersion,
    User,
    _text,
    day_start,
    from_ms,
    now_utc,
    to_ms,
)
from anomalyapp.store.versions import CURRENT_MODEL_VERSION, VersionRecords
from anomalyapp.store.watched_files import WatchedFileRecords

# The record types and time helpers live beside the store (rows.py and the part modules); this module is
# where the rest of the app imports them from.
__all__ = [
    "BUSY_TIMEOUT_MS", "CURRENT_MODEL_VERSION", "FILE_NAME", "LABEL_FILTERS", "LABELS", "ORDERS", "ROLES", "VERDICTS",
    "VERIFY_LIMIT_MB", "AuditEntry", "InspectionQuery", "InspectionRecord", "LabelRecord", "LedgerReport",
    "ModelVersion", "RecordStore", "User", "day_start", "from_ms", "now_utc", "to_ms",
]

FILE_NAME = "records.sqlite3"
BUSY_TIMEOUT_MS = 10_000
VERIFY_LIMIT_MB = 64  # files up to this size are checked whole at open (about a quarter of a second)


class RecordStore(InspectionRecords, AccountRecords, VersionRecords, LedgerRecords, WatchedFileRecords,
                  OutboxRecords):
    """The project's records database. Open with ``RecordStore.open(path)`` or as a context manager."""

    def __init__(self, path: str | os.PathLike, *, verify: bool | None = None):
        """Open (creating or migrating) the database at ``path``.

        ``verify``: run SQLite's ``quick_check`` over every page at open. It costs about 4 ms per MB, so by
        default (None) it runs for files up to ``VERIFY_LIMIT_MB`` only; a bigger file is checked page by
        page as it is read (damage then surfaces as a ``StoreError`` on the query that meets it), and
        ``check_integrity()`` checks it whole on demand.
        """
        self.path = Path(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        conn = self._connection()
        try:
            schema.migrate(conn, self.path)
            if verify is None:
                verify = self.path.stat().st_size <= VERIFY_LIMIT_MB * 1e6
            if verify:
                self.check_integrity()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, path: str | os.PathLike, *, verify: bool | None = None) -> RecordStore:
        return cls(path, verify=verify)

    @classmethod
    def for_project(cls, project_root: str | os.PathLike, *, verify: bool | None = None) -> RecordStore:
        return cls(Path(project_root) / FILE_NAME, verify=verify)

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's connection; the store cannot be used afterwards."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    @property
    def schema_version(self) -> int:
        return self._read(lambda c: schema.schema_version(c))

    # -- connections and transactions -------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"records database {self.path} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open records database {self.path}: {exc}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            schema.register_functions(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open records database {self.path}: {exc}") from None
        with self._lock:
            if self._closed:
                conn.close()
                raise StoreError(f"records database {self.path} is closed")
            self._connections.append(conn)
        self._local.conn = conn
        return conn

    def check_integrity(self) -> None:
        """SQLite's ``quick_check`` over the whole file; a ``StoreError`` naming the first problems."""
        try:
            problems = [row[0] for row in self._connection().execute("PRAGMA quick_check(3)")]
        except sqlite3.Error as exc:
            raise StoreError(f"records database {self.path} is damaged: {exc}") from None
        if problems != ["ok"]:
            raise StoreError(f"records database {self.path} is damaged: {'; '.join(problems)}")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; any exception rolls everything back. Nested calls join the outer."""
        conn = self._connection()
        if conn.in_transaction:
            yield conn
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write records database {self.path}: {exc}") from None
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot write records database {self.path}: {exc}") from None
            raise

    def transaction(self):
        """Group several store calls into one transaction (their audit entries included)."""
        return self._transaction()

    def _read(self, fn):
        try:
            return fn(self._connection())
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read records database {self.path}: {exc}") from None

    def _audit(self, conn, user_id, action, subject, old_value=None, new_value=None, at: datetime | None = None) -> None:
        conn.execute(
            "INSERT INTO audit_log (at, user_id, action, subject, old_value, new_value) VALUES (?, ?, ?, ?, ?, ?)",
            (to_ms(at or now_utc()), user_id, action, subject, _text(old_value), _text(new_value)),
        )
