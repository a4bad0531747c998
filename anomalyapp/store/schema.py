"""The records database's tables, and the migrations that bring any older file up to date.

``MIGRATIONS[i]`` turns a database of schema version ``i`` into version ``i + 1``; the version is kept in
``PRAGMA user_version`` (0 for a new, empty file). Each migration runs inside one transaction together with
the version bump, so a crash mid-migration leaves the file at the older version, never in between. A file
whose version is newer than ``SCHEMA_VERSION`` was written by a newer anomalyapp and is refused.

Conventions: times are INTEGER milliseconds since the Unix epoch, UTC; ids are INTEGER PRIMARY KEYs; rows
of ``labels`` and ``audit_log`` are never changed or deleted (triggers refuse it): a correction is a new row.
"""

from __future__ import annotations

import os
import sqlite3

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

MIGRATIONS: list[str] = [_V1, _V2, _V3]
SCHEMA_VERSION = len(MIGRATIONS)


def file_name_key(image_path: str) -> str:
    """What name search looks in: the file's base name, lower-cased (either separator style)."""
    return os.path.basename(str(image_path).replace("\\", "/")).lower()


def register_functions(conn: sqlite3.Connection) -> None:
    """SQL functions the migrations use; registered on every connection."""
    conn.create_function("anomalyapp_file_name", 1, file_name_key, deterministic=True)


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
            for statement in statements(MIGRATIONS[current]):
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
