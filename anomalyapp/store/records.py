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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from anomalyapp.core.errors import StoreError
from anomalyapp.core.verdicts import Verdict
from anomalyapp.store import schema

FILE_NAME = "records.sqlite3"
BUSY_TIMEOUT_MS = 10_000
VERIFY_LIMIT_MB = 64  # files up to this size are checked whole at open (about a quarter of a second)
CURRENT_MODEL_VERSION = "current_model_version"  # settings key: id of the model version in use

VERDICTS = (Verdict.OK, Verdict.NG, Verdict.REVIEW)  # what a recorded inspection can be (Error is never recorded)
LABELS = ("OK", "NG")
ROLES = ("operator", "supervisor")
LABEL_FILTERS = ("OK", "NG", "unlabelled", "labelled")
ORDERS = {
    "newest": "inspected_at DESC, id DESC",
    "oldest": "inspected_at ASC, id ASC",
    "score_desc": "score DESC, id DESC",
    "score_asc": "score ASC, id ASC",
    "name": "file_name ASC, id ASC",
}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class InspectionRecord:
    """One image judged by a model. ``id`` and ``label`` (the current label) are set when read back."""

    image_path: str
    score: float
    verdict: str  # 'OK' | 'NG' | 'Review'
    threshold: float
    inspected_at: datetime | None = None  # None: now, when recorded
    raw_score: float | None = None
    content_sha256: str | None = None
    model_version_id: int | None = None
    uncertain_low: float | None = None
    source: str = "folder"  # 'folder' | 'camera' | ...
    user_id: int | None = None
    id: int | None = None
    label: str | None = None  # current label: 'OK' | 'NG' | None (unlabelled)

    @property
    def file_name(self) -> str:
        return os.path.basename(self.image_path.replace("\\", "/"))


@dataclass(frozen=True)
class LabelRecord:
    """A person's judgement of one inspection; the newest per inspection is the current one."""

    id: int
    inspection_id: int
    label: str  # 'OK' | 'NG'
    note: str
    region_png: bytes | None  # painted defect region as PNG bytes
    user_id: int | None
    created_at: datetime


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str  # 'operator' | 'supervisor'
    active: bool
    created_at: datetime

    @property
    def is_supervisor(self) -> bool:
        return self.role == "supervisor"


@dataclass(frozen=True)
class ModelVersion:
    """One state of the model in use: a trained folder plus its threshold, derived from ``parent_id``."""

    id: int
    parent_id: int | None
    folder: str  # folder name under the project's models/
    change: str  # 'trained', 'threshold 0.550', 'false positive added: 000.png', ...
    threshold: float
    user_id: int | None
    created_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    user_id: int | None
    action: str
    subject: str
    old_value: str | None
    new_value: str | None


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


@dataclass(frozen=True)
class InspectionQuery:
    """A search over inspections; every field is optional and they combine with AND.

    ``date_from`` is inclusive and ``date_to`` exclusive for a ``datetime``; a ``date`` stands for its whole
    local day, so ``date_from=date_to=day`` is that day. ``label``: 'OK', 'NG', 'unlabelled' or 'labelled'.
    ``model_version_id`` may be one id or a tuple of ids. ``name_contains`` matches the file name, any case.
    ``findings`` keeps only what needs a look: verdict NG or Review, or labelled by a person.
    """

    date_from: datetime | date | None = None
    date_to: datetime | date | None = None
    verdict: str | None = None
    label: str | None = None
    score_min: float | None = None
    score_max: float | None = None
    model_version_id: int | tuple[int, ...] | None = None
    name_contains: str | None = None
    source: str | None = None
    findings: bool = False  # only what needs a look: verdict NG or Review, or labelled
    limit: int | None = None
    offset: int = 0
    order: str = "newest"

    def __post_init__(self):
        if self.verdict is not None and self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {self.verdict!r}")
        if self.label is not None and self.label not in LABEL_FILTERS:
            raise ValueError(f"label must be one of {', '.join(LABEL_FILTERS)}, not {self.label!r}")
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {self.order!r}")
        if self.limit is not None and self.limit < 0 or self.offset < 0:
            raise ValueError("limit and offset must not be negative")


# --------------------------------------------------------------------------------------------------
# time


def now_utc() -> datetime:
    return datetime.now(UTC)


def _now_ms_precision() -> datetime:
    """Now, truncated to what the database keeps, so a returned record equals the one read back."""
    return from_ms(to_ms(now_utc()))


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch; a naive datetime is local time."""
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def day_start(day: date) -> datetime:
    """Local midnight at the start of ``day``, timezone-aware."""
    return datetime.combine(day, time.min).astimezone()


def _bound(value: datetime | date, end: bool) -> int:
    if isinstance(value, datetime):
        return to_ms(value)
    return to_ms(day_start(value + timedelta(days=1) if end else value))


# --------------------------------------------------------------------------------------------------
# the store

_INSPECTION_COLUMNS = (
    "id, image_path, content_sha256, inspected_at, model_version_id, score, raw_score, verdict, threshold, "
    "uncertain_low, source, user_id, label"
)
_LABEL_COLUMNS = "id, inspection_id, label, note, region_png, user_id, created_at"
_USER_COLUMNS = "id, name, role, active, created_at"
_VERSION_COLUMNS = "id, parent_id, folder, change, threshold, user_id, created_at"
_AUDIT_COLUMNS = "id, at, user_id, action, subject, old_value, new_value"
_LEDGER_INSPECTION_COLUMNS = ", ".join(schema.LEDGER_TABLES["inspections"])


def _inspection(row) -> InspectionRecord:
    (id_, path, sha, at, version, score, raw, verdict, threshold, low, source, user, label) = row
    return InspectionRecord(
        image_path=path, score=score, verdict=verdict, threshold=threshold, inspected_at=from_ms(at), raw_score=raw,
        content_sha256=sha, model_version_id=version, uncertain_low=low, source=source, user_id=user, id=id_,
        label=label,
    )


def _label(row) -> LabelRecord:
    id_, inspection, label, note, region, user, at = row
    return LabelRecord(id_, inspection, label, note, bytes(region) if region is not None else None, user, from_ms(at))


def _user(row) -> User:
    id_, name, role, active, at = row
    return User(id_, name, role, bool(active), from_ms(at))


def _version(row) -> ModelVersion:
    id_, parent, folder, change, threshold, user, at = row
    return ModelVersion(id_, parent, folder, change, threshold, user, from_ms(at))


def _audit(row) -> AuditEntry:
    id_, at, user, action, subject, old, new = row
    return AuditEntry(id_, from_ms(at), user, action, subject, old, new)


def _where(query: InspectionQuery) -> tuple[str, list]:
    clauses, params = [], []
    if query.date_from is not None:
        clauses.append("inspected_at >= ?")
        params.append(_bound(query.date_from, end=False))
    if query.date_to is not None:
        clauses.append("inspected_at < ?")
        params.append(_bound(query.date_to, end=True))
    if query.verdict is not None:
        clauses.append("verdict = ?")
        params.append(query.verdict)
    if query.label == "unlabelled":
        clauses.append("label IS NULL")
    elif query.label == "labelled":
        clauses.append("label IS NOT NULL")
    elif query.label is not None:
        clauses.append("label = ?")
        params.append(query.label)
    if query.score_min is not None:
        clauses.append("score >= ?")
        params.append(float(query.score_min))
    if query.score_max is not None:
        clauses.append("score <= ?")
        params.append(float(query.score_max))
    if query.model_version_id is not None:
        ids = (query.model_version_id,) if isinstance(query.model_version_id, int) else tuple(query.model_version_id)
        if not ids:
            clauses.append("0")
        else:
            clauses.append(f"model_version_id IN ({', '.join('?' * len(ids))})")
            params.extend(ids)
    if query.name_contains:
        clauses.append("instr(file_name, ?) > 0")
        params.append(query.name_contains.lower())
    if query.source is not None:
        clauses.append("source = ?")
        params.append(query.source)
    if query.findings:
        clauses.append("(verdict <> 'OK' OR label IS NOT NULL)")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _covering(query: InspectionQuery) -> str:
    """For counts: when every filter is on time, verdict or label, the (inspected_at, verdict, label) index
    answers without reading a single row (SQLite's planner would otherwise pick the verdict index and read
    every row to learn its label)."""
    others = (query.score_min, query.score_max, query.model_version_id, query.name_contains, query.source)
    return " INDEXED BY inspections_at_verdict_label" if all(v is None for v in others) else ""


class RecordStore:
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

    # -- inspections ------------------------------------------------------------------------------

    def record_inspection(self, record: InspectionRecord) -> InspectionRecord:
        return self.record_inspections([record])[0]

    def record_inspections(self, records: Iterable[InspectionRecord]) -> list[InspectionRecord]:
        """Insert many inspections in one transaction; returns them with ``id`` (and time) filled in."""
        out = []
        with self._transaction() as conn:
            default_at = _now_ms_precision()
            for record in records:
                if record.verdict not in VERDICTS:
                    raise StoreError(f"unknown verdict {record.verdict!r} (use {', '.join(VERDICTS)})")
                at = from_ms(to_ms(record.inspected_at)) if record.inspected_at else default_at
                cursor = conn.execute(
                    "INSERT INTO inspections (image_path, file_name, content_sha256, inspected_at, model_version_id, "
                    "score, raw_score, verdict, threshold, uncertain_low, source, user_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (str(record.image_path), schema.file_name_key(record.image_path), record.content_sha256,
                     to_ms(at), record.model_version_id, float(record.score),
                     None if record.raw_score is None else float(record.raw_score), record.verdict,
                     float(record.threshold), None if record.uncertain_low is None else float(record.uncertain_low),
                     record.source, record.user_id),
                )
                out.append(replace(record, id=cursor.lastrowid, inspected_at=at, label=None))
            if out:  # chained here rather than by a trigger (see schema.LEDGERED_BY_THE_STORE), as stored
                schema.append_to_ledger(conn, "inspections", conn.execute(
                    f"SELECT {_LEDGER_INSPECTION_COLUMNS} FROM inspections WHERE id BETWEEN ? AND ? ORDER BY id",
                    (out[0].id, out[-1].id)))
        return out

    def inspection(self, inspection_id: int) -> InspectionRecord | None:
        row = self._read(lambda c: c.execute(
            f"SELECT {_INSPECTION_COLUMNS} FROM inspections WHERE id = ?", (inspection_id,)).fetchone())
        return _inspection(row) if row else None

    def query_inspections(self, query: InspectionQuery | None = None) -> list[InspectionRecord]:
        return list(self.iter_inspections(query))

    def iter_inspections(self, query: InspectionQuery | None = None, batch: int = 2000) -> Iterator[InspectionRecord]:
        """The matching inspections in the query's order, fetched ``batch`` rows at a time."""
        query = query or InspectionQuery()
        where, params = _where(query)
        sql = f"SELECT {_INSPECTION_COLUMNS} FROM inspections{where} ORDER BY {ORDERS[query.order]}"
        if query.limit is not None or query.offset:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if query.limit is None else query.limit, query.offset]
        cursor = self._read(lambda c: c.execute(sql, params))
        while True:
            rows = self._read(lambda c: cursor.fetchmany(batch))
            if not rows:
                return
            yield from map(_inspection, rows)

    def count_inspections(self, query: InspectionQuery | None = None) -> int:
        where, params = _where(query or InspectionQuery())
        return self._read(lambda c: c.execute(f"SELECT count(*) FROM inspections{where}", params).fetchone()[0])

    def counts_by_verdict_and_label(self, query: InspectionQuery | None = None) -> dict[tuple[str, str | None], int]:
        """{(verdict, current label or None): count} over the matching inspections (limit/offset ignored)."""
        query = query or InspectionQuery()
        where, params = _where(query)
        rows = self._read(lambda c: c.execute(
            f"SELECT verdict, label, count(*) FROM inspections{_covering(query)}{where} GROUP BY verdict, label",
            params).fetchall())
        return {(verdict, label): n for verdict, label, n in rows}

    def daily_counts(self, query: InspectionQuery | None = None) -> list[tuple[date, str, str | None, int]]:
        """(local day, verdict, label, count) rows, by day, over the matching inspections."""
        query = query or InspectionQuery()
        where, params = _where(query)
        rows = self._read(lambda c: c.execute(
            "SELECT date(inspected_at / 1000, 'unixepoch', 'localtime') AS day, verdict, label, count(*) "
            f"FROM inspections{_covering(query)}{where} GROUP BY day, verdict, label ORDER BY day", params).fetchall())
        return [(date.fromisoformat(day), verdict, label, n) for day, verdict, label, n in rows]

    def labelled_scores(self, query: InspectionQuery | None = None) -> list[tuple[float, str]]:
        """(score, current label) of every labelled inspection that matches."""
        query = query or InspectionQuery()
        if query.label is None:
            query = replace(query, label="labelled")
        where, params = _where(query)
        return self._read(lambda c: c.execute(f"SELECT score, label FROM inspections{where}", params).fetchall())

    # -- labels -----------------------------------------------------------------------------------

    def add_label(self, inspection_id: int, label: str, *, note: str = "", region_png: bytes | None = None,
                  user_id: int | None = None) -> LabelRecord:
        """A person's label for an inspection, written with its audit entry in one transaction."""
        if label not in LABELS:
            raise StoreError(f"unknown label {label!r} (use OK or NG)")
        if region_png is not None and not bytes(region_png).startswith(_PNG_SIGNATURE):
            raise StoreError("the painted defect region must be PNG bytes")
        at = _now_ms_precision()
        with self._transaction() as conn:
            row = conn.execute("SELECT label FROM inspections WHERE id = ?", (inspection_id,)).fetchone()
            if row is None:
                raise StoreError(f"no inspection {inspection_id} in {self.path}")
            cursor = conn.execute(
                "INSERT INTO labels (inspection_id, label, note, region_png, user_id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (inspection_id, label, note or "", None if region_png is None else bytes(region_png), user_id, to_ms(at)),
            )
            label_id = cursor.lastrowid
            new_value = label if not note else f"{label}: {note}"
            self._audit(conn, user_id, "label_added", f"inspection:{inspection_id}", row[0], new_value)
        return LabelRecord(label_id, inspection_id, label, note or "", region_png, user_id, at)

    def labels_for(self, inspection_id: int) -> list[LabelRecord]:
        """Every label of an inspection, oldest first; the last one is current."""
        rows = self._read(lambda c: c.execute(
            f"SELECT {_LABEL_COLUMNS} FROM labels WHERE inspection_id = ? ORDER BY id", (inspection_id,)).fetchall())
        return [_label(row) for row in rows]

    def current_label(self, inspection_id: int) -> LabelRecord | None:
        row = self._read(lambda c: c.execute(
            f"SELECT {_LABEL_COLUMNS} FROM labels WHERE inspection_id = ? ORDER BY id DESC LIMIT 1",
            (inspection_id,)).fetchone())
        return _label(row) if row else None

    def current_labels(self, inspection_ids: Sequence[int]) -> dict[int, LabelRecord]:
        """The current label of each of these inspections that has one."""
        out: dict[int, LabelRecord] = {}
        ids = list(inspection_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            sql = (f"SELECT {_LABEL_COLUMNS} FROM labels WHERE id IN (SELECT max(id) FROM labels "
                   f"WHERE inspection_id IN ({', '.join('?' * len(chunk))}) GROUP BY inspection_id)")
            rows = self._read(lambda c, sql=sql, chunk=chunk: c.execute(sql, chunk).fetchall())
            out.update((row[1], _label(row)) for row in rows)
        return out

    # -- users ------------------------------------------------------------------------------------

    def add_user(self, name: str, role: str, password_hash: str, *, actor_id: int | None = None) -> User:
        """A new account; the name must be unique whatever its case (also beyond ASCII)."""
        name = name.strip()
        if not name:
            raise StoreError("a user name cannot be empty")
        if role not in ROLES:
            raise StoreError(f"unknown role {role!r} (use operator or supervisor)")
        at = _now_ms_precision()
        with self._transaction() as conn:
            taken = [row[0] for row in conn.execute("SELECT name FROM users")]
            if any(other.casefold() == name.casefold() for other in taken):
                raise StoreError(f"a user named {name!r} already exists")
            cursor = conn.execute(
                "INSERT INTO users (name, role, password_hash, created_at, active) VALUES (?, ?, ?, ?, 1)",
                (name, role, password_hash, to_ms(at)),
            )
            user = User(cursor.lastrowid, name, role, True, at)
            self._audit(conn, actor_id if actor_id is not None else user.id, "user_added", f"user:{user.id}",
                        None, f"{name} ({role})")
        return user

    def user(self, user_id: int) -> User | None:
        row = self._read(lambda c: c.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone())
        return _user(row) if row else None

    def users(self) -> list[User]:
        rows = self._read(lambda c: c.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name COLLATE NOCASE").fetchall())
        return [_user(row) for row in rows]

    def user_count(self) -> int:
        return self._read(lambda c: c.execute("SELECT count(*) FROM users").fetchone()[0])

    def credentials(self, name: str) -> tuple[User, str] | None:
        """The account with this name (any case) and its password hash; for authentication only."""
        key = name.strip().casefold()
        rows = self._read(lambda c: c.execute(f"SELECT {_USER_COLUMNS}, password_hash FROM users").fetchall())
        for row in rows:
            if row[1].casefold() == key:
                return _user(row[:5]), row[5]
        return None

    def set_password_hash(self, user_id: int, password_hash: str, *, actor_id: int | None,
                          action: str = "password_changed") -> None:
        with self._transaction() as conn:
            self._require_user(conn, user_id)
            conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
            self._audit(conn, actor_id, action, f"user:{user_id}")  # never the hash itself

    def set_role(self, user_id: int, role: str, *, actor_id: int | None) -> User:
        if role not in ROLES:
            raise StoreError(f"unknown role {role!r} (use operator or supervisor)")
        with self._transaction() as conn:
            old = self._require_user(conn, user_id)
            if old.role != role:
                conn.execute("UPDATE users SET role = ? WHERE id = ?", (role, user_id))
                self._audit(conn, actor_id, "role_changed", f"user:{user_id}", old.role, role)
        return replace(old, role=role)

    def set_active(self, user_id: int, active: bool, *, actor_id: int | None) -> User:
        with self._transaction() as conn:
            old = self._require_user(conn, user_id)
            if old.active != active:
                conn.execute("UPDATE users SET active = ? WHERE id = ?", (int(active), user_id))
                self._audit(conn, actor_id, "user_activated" if active else "user_deactivated", f"user:{user_id}",
                            str(old.active).lower(), str(active).lower())
        return replace(old, active=active)

    def _require_user(self, conn, user_id: int) -> User:
        row = conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone()
        if row is None:
            raise StoreError(f"no user {user_id} in {self.path}")
        return _user(row)

    # -- model versions ---------------------------------------------------------------------------

    def add_model_version(self, folder: str, change: str, threshold: float, *, parent_id: int | None = None,
                          user_id: int | None = None, make_current: bool = True) -> ModelVersion:
        """A new model version (and, by default, make it the one in use), audited, in one transaction."""
        at = _now_ms_precision()
        with self._transaction() as conn:
            if parent_id is not None and conn.execute(
                    "SELECT 1 FROM model_versions WHERE id = ?", (parent_id,)).fetchone() is None:
                raise StoreError(f"no model version {parent_id} in {self.path}")
            cursor = conn.execute(
                "INSERT INTO model_versions (parent_id, folder, change, threshold, user_id, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (parent_id, folder, change, float(threshold), user_id, to_ms(at)),
            )
            version = ModelVersion(cursor.lastrowid, parent_id, folder, change, float(threshold), user_id, at)
            self._audit(conn, user_id, "model_version_added", f"model_version:{version.id}", None,
                        f"{folder}: {change} (threshold {threshold:.4g})")
            if make_current:
                self._set_setting(conn, CURRENT_MODEL_VERSION, str(version.id), user_id)
        return version

    def model_version(self, version_id: int) -> ModelVersion | None:
        row = self._read(lambda c: c.execute(
            f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE id = ?", (version_id,)).fetchone())
        return _version(row) if row else None

    def model_versions(self) -> list[ModelVersion]:
        rows = self._read(lambda c: c.execute(f"SELECT {_VERSION_COLUMNS} FROM model_versions ORDER BY id").fetchall())
        return [_version(row) for row in rows]

    def current_model_version(self) -> ModelVersion | None:
        value = self.get_setting(CURRENT_MODEL_VERSION)
        return self.model_version(int(value)) if value else None

    def set_current_model_version(self, version_id: int, *, user_id: int | None, action: str = "setting_changed") -> ModelVersion:
        with self._transaction() as conn:
            row = conn.execute(f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE id = ?", (version_id,)).fetchone()
            if row is None:
                raise StoreError(f"no model version {version_id} in {self.path}")
            self._set_setting(conn, CURRENT_MODEL_VERSION, str(version_id), user_id, action)
        return _version(row)

    # -- settings ---------------------------------------------------------------------------------

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        row = self._read(lambda c: c.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone())
        return row[0] if row and row[0] is not None else default

    def settings(self) -> dict[str, str | None]:
        return dict(self._read(lambda c: c.execute("SELECT key, value FROM settings ORDER BY key").fetchall()))

    def set_setting(self, key: str, value: str | None, *, user_id: int | None) -> bool:
        """Set (or with None remove) a setting, audited with old and new value; False when unchanged."""
        with self._transaction() as conn:
            return self._set_setting(conn, key, value, user_id)

    def _set_setting(self, conn, key: str, value: str | None, user_id: int | None, action: str = "setting_changed") -> bool:
        row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        old = row[0] if row else None
        value = None if value is None else str(value)
        if old == value:
            return False
        if value is None:
            conn.execute("DELETE FROM settings WHERE key = ?", (key,))
        else:
            conn.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))
        self._audit(conn, user_id, action, f"setting:{key}", old, value)
        return True

    # -- audit log --------------------------------------------------------------------------------

    def add_audit_entry(self, action: str, subject: str, old_value=None, new_value=None, *,
                        user_id: int | None, at: datetime | None = None) -> None:
        """An audit entry of its own (e.g. a login attempt); joins the caller's transaction when there is one.
        ``at``: the time to record, when the caller keeps its own clock (login throttling); default now."""
        with self._transaction() as conn:
            self._audit(conn, user_id, action, subject, old_value, new_value, at=at)

    def audit_entries(self, *, actions: Sequence[str], limit: int, subject: str | None = None,
                      subject_prefix: str | None = None) -> list[AuditEntry]:
        """Entries with one of ``actions``, for one ``subject`` or every subject under ``subject_prefix``
        (e.g. all 'login:...'), newest first. Both subject filters use the subject index."""
        if subject is not None:
            low, high = subject, subject + "\0"
        else:
            low = subject_prefix
            high = subject_prefix[:-1] + chr(ord(subject_prefix[-1]) + 1)  # the first string past the prefix
        marks = ", ".join("?" * len(actions))
        rows = self._read(lambda c: c.execute(
            f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE subject >= ? AND subject < ? AND action IN ({marks}) "
            "ORDER BY id DESC LIMIT ?", (low, high, *actions, limit)).fetchall())
        return [_audit(row) for row in rows]

    def audit_log(self, *, subject: str | None = None, limit: int | None = None, offset: int = 0) -> list[AuditEntry]:
        """Audit entries, newest first; ``subject`` like 'inspection:42', 'user:3' or 'setting:single_user'."""
        where, params = ("WHERE subject = ?", [subject]) if subject else ("", [])
        rows = self._read(lambda c: c.execute(
            f"SELECT {_AUDIT_COLUMNS} FROM audit_log {where} ORDER BY id DESC LIMIT ? OFFSET ?",
            params + [-1 if limit is None else limit, offset]).fetchall())
        return [_audit(row) for row in rows]

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


_NOT_RECORDED = object()


def _text(value) -> str | None:
    return None if value is None else str(value)
