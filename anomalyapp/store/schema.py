"""The records database's tables, and the migrations that bring any older file up to date.

``MIGRATIONS[i]`` turns a database of schema version ``i`` into version ``i + 1``; the version is kept in
``PRAGMA user_version`` (0 for a new, empty file). Each migration runs inside one transaction together with
the version bump, so a crash mid-migration leaves the file at the older version, never in between. A file
whose version is newer than ``SCHEMA_VERSION`` was written by a newer anomalyapp and is refused.

Conventions: times are INTEGER milliseconds since the Unix epoch, UTC; ids are INTEGER PRIMARY KEYs; rows
of ``labels`` and ``audit_log`` are never changed or deleted (triggers refuse it): a correction is a new row.
Since version 4 every row that matters is also chained in the ``ledger`` (see ``_v4_ledger``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import json.encoder
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence

from anomalyapp.core.errors import StoreError

# Version 1: the tables.
_V1 = """
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE COLLATE NOCASE CHECK (length(trim(name)) > 0),
    role          TEXT    NOT NULL CHECK (role IN ('operator', 'supervisor')),
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1))
);

CREATE TABLE model_versions (
    id         INTEGER PRIMARY KEY,
    parent_id  INTEGER REFERENCES model_versions(id),
    folder     TEXT    NOT NULL,
    change     TEXT    NOT NULL,
    threshold  REAL    NOT NULL,
    user_id    INTEGER REFERENCES users(id),
    created_at INTEGER NOT NULL
);

CREATE TABLE inspections (
    id               INTEGER PRIMARY KEY,
    image_path       TEXT    NOT NULL,
    content_sha256   TEXT,
    inspected_at     INTEGER NOT NULL,
    model_version_id INTEGER REFERENCES model_versions(id),
    score            REAL    NOT NULL,
    raw_score        REAL,
    verdict          TEXT    NOT NULL CHECK (verdict IN ('OK', 'NG', 'Review')),
    threshold        REAL    NOT NULL,
    uncertain_low    REAL,
    source           TEXT    NOT NULL DEFAULT 'folder',
    user_id          INTEGER REFERENCES users(id)
);
CREATE INDEX inspections_at ON inspections(inspected_at);

CREATE TABLE labels (
    id            INTEGER PRIMARY KEY,
    inspection_id INTEGER NOT NULL REFERENCES inspections(id),
    label         TEXT    NOT NULL CHECK (label IN ('OK', 'NG')),
    note          TEXT    NOT NULL DEFAULT '',
    region_png    BLOB,
    user_id       INTEGER REFERENCES users(id),
    created_at    INTEGER NOT NULL
);
CREATE INDEX labels_inspection ON labels(inspection_id, id);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT
) WITHOUT ROWID;

CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    user_id   INTEGER REFERENCES users(id),
    action    TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    old_value TEXT,
    new_value TEXT
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_subject ON audit_log(subject, id);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: entries cannot be changed'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: entries cannot be deleted'); END;
CREATE TRIGGER labels_no_update BEFORE UPDATE ON labels
BEGIN SELECT RAISE(ABORT, 'labels are history: add a new label instead of changing one'); END;
CREATE TRIGGER labels_no_delete BEFORE DELETE ON labels
BEGIN SELECT RAISE(ABORT, 'labels are history: add a new label instead of deleting one'); END;
"""

# Version 2: search. A lower-case file name for substring search, the current label beside each
# inspection (kept by a trigger, so it cannot drift from the labels table), and indexes for the filters.
_V2 = """
ALTER TABLE inspections ADD COLUMN file_name TEXT NOT NULL DEFAULT '';
ALTER TABLE inspections ADD COLUMN label TEXT CHECK (label IN ('OK', 'NG'));
UPDATE inspections SET file_name = anomalyapp_file_name(image_path);
UPDATE inspections SET label = (
    SELECT l.label FROM labels AS l WHERE l.inspection_id = inspections.id ORDER BY l.id DESC LIMIT 1
);
CREATE TRIGGER labels_current AFTER INSERT ON labels
BEGIN UPDATE inspections SET label = NEW.label WHERE id = NEW.inspection_id; END;
CREATE INDEX inspections_verdict_at ON inspections(verdict, inspected_at);
CREATE INDEX inspections_label_at ON inspections(label, inspected_at);
CREATE INDEX inspections_model_at ON inspections(model_version_id, inspected_at);
CREATE INDEX inspections_score ON inspections(score);
CREATE INDEX inspections_sha256 ON inspections(content_sha256);
"""

# Version 3: an index that covers the counts of summaries and daily reports, (inspected_at, verdict, label),
# so they are answered without reading the rows (a 90-day summary of 100,000 inspections: 240 -> 50 ms).
_V3 = """
CREATE INDEX IF NOT EXISTS inspections_at_verdict_label ON inspections(inspected_at, verdict, label);
"""


# Version 4: the ledger, a hash chain over every row that matters, so an edit made outside the app is evident.
#
# Every insert and update of inspections, labels, users, model_versions, settings and audit_log (and every
# deletion of a setting) appends a ledger entry in the same transaction: the table, the row's key, the
# sha256 of the row's canonical content (``row_sha256``) and the entry's own hash, which covers the previous
# entry's hash (``chain_sha256``). Triggers write the entries (inserts of inspections: the store, see
# ``LEDGERED_BY_THE_STORE``); ``RecordStore.verify_ledger`` recomputes both hashes. The triggers call
# functions that only the app registers, so a plain SQLite tool cannot change or delete these rows without
# first dropping a trigger, which the check names too. Rows and ledger entries are never deleted (triggers).
# Rows written before this migration are chained once, here: they are vouched for from this moment on only.
# Anyone who knows these rules can rebuild the whole chain: the newest entry's hash, noted elsewhere (the
# verify command prints it), is what vouches for everything before it.
LEDGER_TABLES: dict[str, tuple[str, ...]] = {  # table -> its columns, the key first; the order is the hash's
    "users": ("id", "name", "role", "password_hash", "created_at", "active"),
    "model_versions": ("id", "parent_id", "folder", "change", "threshold", "user_id", "created_at"),
    "settings": ("key", "value"),
    "inspections": ("id", "image_path", "content_sha256", "inspected_at", "model_version_id", "score", "raw_score",
                    "verdict", "threshold", "uncertain_low", "source", "user_id", "file_name", "label"),
    "labels": ("id", "inspection_id", "label", "note", "region_png", "user_id", "created_at"),
    "audit_log": ("id", "at", "user_id", "action", "subject", "old_value", "new_value"),
}
_NEVER_DELETED = ("users", "model_versions", "inspections")  # labels and audit_log have had their triggers since v1
_NEVER_CHANGED = ("labels", "audit_log")  # their v1 triggers refuse any update: no ledger trigger needed
# Inserts into inspections are chained by the store itself (``RecordStore.record_inspections``), not by a
# trigger: an INSERT trigger on that table, with its six indexes, made every insert about three times slower
# (measured: any AFTER or BEFORE INSERT trigger, even one that does nothing; UPDATE and DELETE triggers cost
# nothing on insert). A row inserted there by another tool simply has no ledger entry, which the check names.
LEDGERED_BY_THE_STORE = ("inspections",)


def _blob(value):
    if isinstance(value, (bytes, memoryview)):
        return {"blob": bytes(value).hex()}
    raise TypeError(f"a records value cannot be {type(value).__name__}")


# One compact, ASCII-only JSON encoder, built once (json.dumps with options builds a new one per call, which
# doubled the time of a full check); the plain encoder where the C one is missing gives the same text.
if json.encoder.c_make_encoder is not None:
    _encode_chunks = json.encoder.c_make_encoder(None, _blob, json.encoder.encode_basestring_ascii, None, ":", ",",
                                                 False, False, True)

    def _canonical(values: tuple) -> str:
        return "".join(_encode_chunks(values, 0))
else:  # pragma: no cover - CPython always has the C encoder
    _canonical = json.JSONEncoder(separators=(",", ":"), default=_blob).encode

_NO_ENTRY = bytes(32)


def row_sha256(table: str, *values) -> bytes:
    """The hash of a row's canonical content: sha256 of the compact, ASCII-only JSON array [table, value, ...]
    in ``LEDGER_TABLES`` order; a BLOB as {"blob": hex}, a float as Python writes it (which round-trips)."""
    return hashlib.sha256(_canonical((table, *values)).encode()).digest()


def chain_sha256(previous: bytes | None, table: str, key, row_hash: bytes | None) -> bytes:
    """A ledger entry's hash: sha256 of the previous entry's hash (32 zero bytes before the first entry),
    then 0x01 and the row's hash, or 0x00 for a deleted row, then the table name, a zero byte and the row's
    key as text (UTF-8). Every part before the key has a fixed length or ends in the zero byte."""
    flagged_row = b"\x00" if row_hash is None else b"\x01" + bytes(row_hash)
    return hashlib.sha256(b"".join((bytes(previous or _NO_ENTRY), flagged_row, table.encode(), b"\x00",
                                    str(key).encode()))).digest()


_LAST_ENTRY = "(SELECT entry_sha256 FROM ledger ORDER BY id DESC LIMIT 1)"


def append_to_ledger(conn: sqlite3.Connection, table: str, rows: Iterable[Sequence]) -> int:
    """Chain these rows of ``table`` (each its values in ``LEDGER_TABLES`` order, as stored) onto the ledger,
    in the caller's transaction; return how many entries were added."""
    row = conn.execute(_LAST_ENTRY[1:-1]).fetchone()
    previous = row[0] if row else None
    entries = []
    for values in rows:
        row_hash = row_sha256(table, *values)
        previous = chain_sha256(previous, table, values[0], row_hash)
        entries.append((table, str(values[0]), row_hash, previous))
    conn.executemany("INSERT INTO ledger (table_name, row_key, row_sha256, entry_sha256) VALUES (?, ?, ?, ?)", entries)
    return len(entries)


def _ledger_trigger(table: str, event: str) -> str:
    row = "OLD" if event == "DELETE" else "NEW"
    key = f"{row}.{LEDGER_TABLES[table][0]}"
    if event == "DELETE":
        row_hash = "NULL"
    else:
        row_hash = f"anomalyapp_row_sha256('{table}', {', '.join(f'NEW.{c}' for c in LEDGER_TABLES[table])})"
    return (
        f"CREATE TRIGGER {table}_ledger_{event.lower()} AFTER {event} ON {table}\n"
        f"BEGIN INSERT INTO ledger (table_name, row_key, row_sha256, entry_sha256)\n"
        f"    SELECT '{table}', {key}, h, anomalyapp_chain_sha256({_LAST_ENTRY}, '{table}', {key}, h)\n"
        f"    FROM (SELECT {row_hash} AS h); END"
    )


def _v4_ledger(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE ledger (\n"
        "    id           INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "    table_name   TEXT NOT NULL,\n"
        "    row_key      TEXT NOT NULL,\n"
        "    row_sha256   BLOB,\n"  # NULL: the row was deleted (only settings are, by the app)
        "    entry_sha256 BLOB NOT NULL\n"
        ")"
    )
    # Chain what is already there, table by table in key order.
    counts = {table: append_to_ledger(conn, table, conn.execute(
        f"SELECT {', '.join(columns)} FROM {table} ORDER BY {columns[0]}").fetchall())
        for table, columns in LEDGER_TABLES.items()}
    for statement in (
        "CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger\n"
        "BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: entries cannot be changed'); END",
        "CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger\n"
        "BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: entries cannot be deleted'); END",
        *(f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}\n"
          f"BEGIN SELECT RAISE(ABORT, '{table} are records: they cannot be deleted'); END" for table in _NEVER_DELETED),
        *(_ledger_trigger(table, "INSERT") for table in LEDGER_TABLES if table not in LEDGERED_BY_THE_STORE),
        *(_ledger_trigger(table, "UPDATE") for table in LEDGER_TABLES if table not in _NEVER_CHANGED),
        _ledger_trigger("settings", "DELETE"),
    ):
        conn.execute(statement)
    if any(counts.values()):  # say, in the log itself, from when the older rows are vouched for
        conn.execute(
            "INSERT INTO audit_log (at, user_id, action, subject, old_value, new_value) VALUES (?, NULL, ?, ?, NULL, ?)",
            (time.time_ns() // 1_000_000, "ledger_started", "ledger",
             "rows before this entry chained at migration: " + ", ".join(f"{n} {t}" for t, n in counts.items() if n)),
        )


# Version 5: the outbox of verdicts waiting to be sent to the line (``store.outbox``), one row per verdict and
# sink. It is a queue, not a record: rows are marked sent and later pruned, so it is not in the ledger. A row is
# written with its verdict's payload and a message id that stays the same on every retry (delivery is
# at-least-once; a receiver drops repeats by that id); ``id`` gives the order of sending per sink.
_V5 = """
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    sink         TEXT    NOT NULL CHECK (sink IN ('mqtt', 'opcua', 'opcua_client', 'webhook')),
    message_id   TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    sent_at      INTEGER
);
CREATE INDEX outbox_pending ON outbox(sink, sent_at, id);
"""

# Version 6: the hot folder's watched files (``store.watched_files``): one row per file seen complete in a watched
# folder, keyed by folder, name, size and modification time (a new file under an old name is a new part), with
# its state: queued (waiting for the model), done (inspected: ``inspection_id``), skipped (not an image),
# dropped (the queue was full) or error (unreadable), and the reason. A restart re-queues the queued ones and
# skips every other one it knows, so no file is scored twice and none that arrived meanwhile is missed. Like
# the outbox it is working state, not a record (rows change state), so it is not in the ledger; the
# inspections it points to are.
_V6 = """
CREATE TABLE watched_files (
    id            INTEGER PRIMARY KEY,
    folder        TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    size          INTEGER NOT NULL,
    mtime_ns      INTEGER NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('queued', 'done', 'skipped', 'dropped', 'error')),
    reason        TEXT,
    inspection_id INTEGER REFERENCES inspections(id),
    seen_at       INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX watched_files_name ON watched_files(folder, name, id);
CREATE INDEX watched_files_state ON watched_files(folder, state, id);
"""

MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [_V1, _V2, _V3, _v4_ledger, _V5, _V6]
SCHEMA_VERSION = len(MIGRATIONS)


def file_name_key(image_path: str) -> str:
    """What name search looks in: the file's base name, lower-cased (either separator style)."""
    return os.path.basename(str(image_path).replace("\\", "/")).lower()


def register_functions(conn: sqlite3.Connection) -> None:
    """SQL functions the migrations use; registered on every connection."""
    conn.create_function("anomalyapp_file_name", 1, file_name_key, deterministic=True)
    conn.create_function("anomalyapp_row_sha256", -1, row_sha256, deterministic=True)
    conn.create_function("anomalyapp_chain_sha256", 4, chain_sha256, deterministic=True)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: str | os.PathLike, target: int | None = None) -> int:
    """Apply the missing migrations in order, each in its own transaction; return the version reached.

    ``conn`` must be in autocommit mode (``isolation_level=None``). ``target`` stops early (tests build old
    files with it). A newer file is a ``StoreError`` naming it.
    """
    target = SCHEMA_VERSION if target is None else target
    current = schema_version(conn)
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"records database {path} was written by a newer anomalyapp (schema version {current}; "
            f"this version reads up to {SCHEMA_VERSION}); update anomalyapp to open it"
        )
    register_functions(conn)
    while current < target:
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Read again under the write lock: another process may have migrated meanwhile.
            current = schema_version(conn)
            if current >= target:
                conn.execute("COMMIT")
                break
            step = MIGRATIONS[current]
            if callable(step):  # a migration that computes (version 4 chains the existing rows)
                step(conn)
            else:
                for statement in statements(step):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {current + 1}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"cannot update records database {path} to version {current + 1}: {exc}") from None
        current += 1
    return current


def statements(script: str) -> list[str]:
    """A script split into complete statements (a trigger body stays whole), one per ``execute``.

    Not ``executescript``: it commits any open transaction first, and a migration must be one transaction.
    """
    out, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            out.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement in migration: {buffer.strip()[:60]}")
    return out


@functools.lru_cache(maxsize=1)
def expected_triggers() -> dict[str, str]:
    """{name: SQL} of every trigger the migrations create, read from a fresh in-memory database."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrate(conn, ":memory:")
        return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall())
    finally:
        conn.close()
