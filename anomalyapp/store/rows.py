"""What the records hold: the record types, the inspection query, times as stored, and row mapping."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from anomalyapp.core.verdicts import Verdict
from anomalyapp.store import schema

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
# rows

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



def _text(value) -> str | None:
    return None if value is None else str(value)
