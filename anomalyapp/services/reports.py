"""Reports over a project's records: CSV exports and the data of a QA report (Qt-free).

``build_report`` (and ``daily_summary`` / ``monthly_summary`` for a day or a month) gathers what a report
shows into a ``ReportData``: counts by verdict and label, the confusion matrix of verdicts against
confirmed labels, counts per day, the findings (NG, Review or labelled inspections) and thumbnails of the
worst ones. ``anomalyapp.render.pdf_report`` lays a ``ReportData`` out as a PDF; the CSV functions here
write the rows themselves.

Thumbnails come from the image files, with the anomaly heat map drawn the way the viewer draws it (the
same turbo colour map on the normalised scale, ``rendering.overlay``) and the defect region a person painted,
if any, outlined. The records keep scores, not anomaly maps (a map is an image's worth of floats per
inspection), so the map of each thumbnail (at most ``MAX_THUMBNAILS``) comes from scoring its image again
with the model version that judged it, loaded once per version. When that model folder is gone or cannot be
loaded, or the image is unreadable, the thumbnail is the plain image and the report says why
(``ReportData.thumbnail_note``). A caller may pass its own ``render_overlay(path)`` instead, or
``heat_maps=False`` for plain thumbnails.

CSV files are UTF-8 with a byte-order mark (so spreadsheet programs read accented names right), written
atomically: a reader never sees half a file, and a failed write leaves the old one in place.
"""

from __future__ import annotations

import calendar
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

from anomalyapp import __version__
from anomalyapp.core.csv_cells import csv_text
from anomalyapp.core.errors import AppError
from anomalyapp.core.files import write_atomically
from anomalyapp.core.image_names import shown_name
from anomalyapp.core.verdicts import rule_text
from anomalyapp.services.records import RecordsService, Summary
from anomalyapp.store.records import InspectionQuery, InspectionRecord, LabelRecord, ModelVersion

REPORT_THUMBNAIL_SIZE = 240  # longest side of a thumbnail in a PDF report, pixels
MAX_ROWS = 300
MAX_THUMBNAILS = 20  # one page of the PDF
REGION_COLOUR = (255, 0, 200)  # outline of a painted defect region

RenderOverlay = Callable[[str], "np.ndarray | None"]


@dataclass(frozen=True, eq=False)
class Thumbnail:
    """A small picture of one inspection; ``pixels`` is RGB uint8 or None when the image is not available."""

    inspection_id: int
    file_name: str
    pixels: np.ndarray | None
    verdict: str
    score: float
    label: str | None
    overlay: bool = False  # the heat map is drawn on it


@dataclass(frozen=True)
class DayCounts:
    day: date
    total: int
    ok: int
    review: int
    ng: int
    labelled_ok: int
    labelled_ng: int

    @property
    def ng_rate(self) -> float:
        return self.ng / self.total if self.total else 0.0


@dataclass(frozen=True, eq=False)
class ReportData:
    """Everything a QA report shows, ready to lay out."""

    title: str
    period: str
    project: str
    generated_at: datetime
    summary: Summary
    filters: tuple[str, ...] = ()
    days: tuple[DayCounts, ...] = ()
    rows: tuple[InspectionRecord, ...] = ()
    rows_total: int = 0  # rows that matched; more than len(rows) when the list was cut
    rows_title: str = "Findings"
    labels: dict[int, LabelRecord] = field(default_factory=dict)  # inspection id -> current label (no region)
    thumbnails: tuple[Thumbnail, ...] = ()
    versions: dict[int, str] = field(default_factory=dict)  # model version id -> "v3 · folder · threshold"
    users: dict[int, str] = field(default_factory=dict)  # user id -> name
    software: str = f"anomalyapp {__version__}"
    thumbnail_note: str = ""  # why some thumbnails have no heat map


# --------------------------------------------------------------------------------------------------
# building the report data


def build_report(
    records: RecordsService,
    query: InspectionQuery | None = None,
    *,
    title: str = "Inspection report",
    period: str | None = None,
    project: str | None = None,
    max_rows: int = MAX_ROWS,
    max_thumbnails: int = MAX_THUMBNAILS,
    render_overlay: RenderOverlay | None = None,
    heat_maps: bool = True,
) -> ReportData:
    """The report of the inspections matching ``query`` (limit/offset/order are ignored).

    Rows: when the query filters by verdict or label, every match; otherwise the findings (NG, Review or
    labelled), oldest first, at most ``max_rows``. Thumbnails: the findings with the highest scores, NG first,
    with their heat maps (``render_overlay``, else re-scored by the model version that judged them, unless
    ``heat_maps`` is False).
    """
    query = replace(query or InspectionQuery(), limit=None, offset=0)
    store = records.store
    summary = records.summary(query)
    days = _day_counts(store.daily_counts(query))
    listing = query if (query.verdict or query.label or query.findings) else replace(query, findings=True)
    rows_title = "Inspections" if listing is query and not query.findings else "Findings: NG, Review or labelled"
    rows_total = store.count_inspections(listing)
    rows = tuple(store.query_inspections(replace(listing, order="oldest", limit=max_rows)))
    labels = store.current_labels([r.id for r in rows])
    thumbs_from = store.query_inspections(replace(listing, order="score_desc", limit=max_thumbnails * 4))
    thumbs_from.sort(key=lambda r: (r.verdict != "NG", r.label != "NG", r.verdict != "Review", -r.score))
    thumb_rows = _each_part_once(thumbs_from)[:max_thumbnails]
    thumb_labels = store.current_labels([r.id for r in thumb_rows])
    versions = store.model_versions()
    heat = VersionHeatMaps(records.root, versions) if render_overlay is None and heat_maps and thumb_rows else None
    overlay_for = (lambda record: render_overlay(record.image_path)) if render_overlay is not None else heat
    try:
        thumbnails = tuple(_thumbnail(r, thumb_labels.get(r.id), overlay_for) for r in thumb_rows)
    finally:
        if heat is not None:
            heat.close()
    return ReportData(
        title=title,
        period=period or describe_period(query.date_from, query.date_to),
        project=project or project_name(records.root),
        generated_at=datetime.now().astimezone(),
        summary=summary,
        filters=describe_filters(query, versions),
        days=days,
        rows=rows,
        rows_total=rows_total,
        rows_title=rows_title,
        labels={i: replace(lab, region_png=None) for i, lab in labels.items()},
        thumbnails=thumbnails,
        versions={v.id: _version_text(v, rows) for v in versions},
        users={u.id: u.name for u in store.users()},
        thumbnail_note=heat.note() if heat is not None else "",
    )


def daily_summary(records: RecordsService, day: date, query: InspectionQuery | None = None, **options) -> ReportData:
    """The report of one local calendar day."""
    query = replace(query or InspectionQuery(), date_from=day, date_to=day)
    options.setdefault("title", "Daily inspection report")
    options.setdefault("period", f"{day:%A} {day.isoformat()}")
    return build_report(records, query, **options)


def monthly_summary(records: RecordsService, year: int, month: int, query: InspectionQuery | None = None,
                    **options) -> ReportData:
    """The report of one calendar month, with a line per day."""
    if not 1 <= month <= 12:
        raise AppError(f"there is no month {month}")
    first = date(year, month, 1)
    last = date(year, month, calendar.monthrange(year, month)[1])
    query = replace(query or InspectionQuery(), date_from=first, date_to=last)
    options.setdefault("title", "Monthly inspection report")
    options.setdefault("period", f"{first:%B %Y} ({first.isoformat()} to {last.isoformat()})")
    report = build_report(records, query, **options)
    return replace(report, days=_every_day(report.days, first, last))


def project_name(root: Path) -> str:
    """The name in the project's ``project.json``, else its folder's name."""
    try:
        name = json.loads((Path(root) / "project.json").read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    return name if isinstance(name, str) and name.strip() else Path(root).name


def describe_period(date_from: datetime | date | None, date_to: datetime | date | None) -> str:
    def text(value):
        if isinstance(value, datetime):
            return value.astimezone().strftime("%Y-%m-%d %H:%M")
        return value.isoformat()

    if date_from is None and date_to is None:
        return "all records"
    if date_from is None:
        return f"until {text(date_to)}"
    if date_to is None:
        return f"from {text(date_from)}"
    if date_from == date_to and not isinstance(date_from, datetime):
        return date_from.isoformat()
    return f"{text(date_from)} to {text(date_to)}"


def describe_filters(query: InspectionQuery, versions: Iterable[ModelVersion] = ()) -> tuple[str, ...]:
    """The query's filters other than the period, as short phrases for a report's header."""
    out = []
    if query.verdict:
        out.append(f"verdict {query.verdict}")
    if query.label:
        out.append("unlabelled" if query.label == "unlabelled" else
                   "labelled" if query.label == "labelled" else f"labelled {query.label}")
    if query.score_min is not None:
        out.append(f"score ≥ {query.score_min:g}")
    if query.score_max is not None:
        out.append(f"score ≤ {query.score_max:g}")
    if query.model_version_id is not None:
        ids = (query.model_version_id,) if isinstance(query.model_version_id, int) else query.model_version_id
        out.append("model " + ", ".join(f"v{i}" for i in ids))
    if query.name_contains:
        out.append(f"name contains “{query.name_contains}”")
    if query.source:
        out.append(f"source {query.source}")
    return tuple(out)


def _version_text(version: ModelVersion, rows) -> str:
    """"v3 · folder · judged with 0.500 (review from 0.442)": the rules the listed inspections of that version
    were judged with (a supervisor may have moved the threshold after the version was recorded), or the version's
    own threshold when none of them is listed."""
    rules = sorted({(r.threshold, r.uncertain_low) for r in rows if r.model_version_id == version.id},
                   key=lambda rule: (rule[0], -1.0 if rule[1] is None else rule[1]))
    judged = " or ".join(rule_text(*rule) for rule in rules or [(version.threshold, None)])
    return f"v{version.id} · {version.folder} · judged with {judged}"


def _day_counts(rows: list[tuple[date, str, str | None, int]]) -> tuple[DayCounts, ...]:
    per_day: dict[date, dict[str, int]] = {}
    for day, verdict, label, n in rows:
        counts = per_day.setdefault(day, {"total": 0, "OK": 0, "Review": 0, "NG": 0, "lOK": 0, "lNG": 0})
        counts["total"] += n
        counts[verdict] += n
        if label:
            counts["l" + label] += n
    return tuple(
        DayCounts(day, c["total"], c["OK"], c["Review"], c["NG"], c["lOK"], c["lNG"]) for day, c in sorted(per_day.items())
    )


def _every_day(days: tuple[DayCounts, ...], first: date, last: date) -> tuple[DayCounts, ...]:
    """One line per calendar day, with zeros for days without inspections."""
    known = {d.day: d for d in days}
    out, day = [], first
    while day <= last:
        out.append(known.get(day) or DayCounts(day, 0, 0, 0, 0, 0, 0))
        day += timedelta(days=1)
    return tuple(out)


class VersionHeatMaps:
    """Thumbnails with heat maps: each image scored again by the model version that judged it.

    Models are loaded on first use, one per version, and dropped by ``close``; a version without a model
    (folder gone, not loadable, no version recorded) is tried once, and its thumbnails stay plain, counted
    under the reason that ``note`` reports.
    """

    def __init__(self, project_root: str | os.PathLike, versions: Iterable[ModelVersion]):
        self.models_dir = Path(project_root) / "models"
        self.versions = {v.id: v for v in versions}
        self._sessions: dict[int | None, tuple[object | None, str]] = {}  # version id -> (session, why none)
        self.plain: dict[str, int] = {}  # reason -> thumbnails left without a heat map

    def __call__(self, record: InspectionRecord) -> np.ndarray | None:
        from anomalyapp.data.images import load_image
        from anomalyapp.services import rendering

        session, reason = self._session(record.model_version_id)
        if session is None:
            self.plain[reason] = self.plain.get(reason, 0) + 1
            return None
        try:
            image = load_image(record.image_path)
        except AppError:
            return None  # the thumbnail says "image not available"
        prediction = session.detector.predict(image.to_rgb())
        # Blend near the thumbnail's size: the picture is shrunk to REPORT_THUMBNAIL_SIZE anyway.
        return rendering.overlay(image.pixels, prediction.anomaly_map, budget=4 * REPORT_THUMBNAIL_SIZE ** 2)

    def _session(self, version_id: int | None) -> tuple[object | None, str]:
        if version_id not in self._sessions:
            from anomalyapp.services.inference import InferenceSession

            version = self.versions.get(version_id)
            session, reason = None, ""
            if version is None:
                reason = "no model version recorded"
            else:
                try:
                    session = InferenceSession(self.models_dir / version.folder)
                except (AppError, OSError, ValueError, RuntimeError) as error:  # an old or damaged model
                    reason = f"model v{version.id} ({version.folder}) not available: {error}"
            self._sessions[version_id] = (session, reason)
        return self._sessions[version_id]

    def close(self) -> None:
        self._sessions.clear()

    def note(self) -> str:
        """Why some thumbnails have no heat map, e.g. "model v2 (m2) not available: … (3 images)"."""
        return "; ".join(f"{reason} ({n} image{'s' if n > 1 else ''})" for reason, n in self.plain.items())


def _each_part_once(records: list[InspectionRecord]) -> list[InspectionRecord]:
    """The first inspection of each part, in the given order: a part inspected again (the same file, the same
    content) would otherwise fill the pictures with copies of itself, where the table lists every inspection."""
    seen, out = set(), []
    for record in records:
        part = (record.image_path, record.content_sha256 or record.id)  # an unhashed record stands for itself
        if part not in seen:
            seen.add(part)
            out.append(record)
    return out


def _thumbnail(record: InspectionRecord, label, render_overlay) -> Thumbnail:
    pixels, overlay = None, False
    if render_overlay is not None:
        try:
            pixels = render_overlay(record)
        except AppError:
            pixels = None
        overlay = pixels is not None
    if pixels is None:
        pixels = _plain_image(record.image_path)
    if pixels is not None:
        pixels = _fit(pixels, REPORT_THUMBNAIL_SIZE)
        if label is not None and label.region_png:
            pixels = _outline_region(pixels, label.region_png)
    return Thumbnail(record.id, shown_name(record.image_path), pixels, record.verdict, record.score, record.label, overlay)


def _plain_image(path: str) -> np.ndarray | None:
    from anomalyapp.data.images import load_image
    from anomalyapp.services.rendering import display_rgb

    try:
        return display_rgb(load_image(path).pixels)
    except AppError:
        return None


def _fit(pixels: np.ndarray, size: int) -> np.ndarray:
    import cv2

    from anomalyapp.services.rendering import display_rgb

    pixels = display_rgb(np.asarray(pixels))
    height, width = pixels.shape[:2]
    scale = size / max(height, width)
    if scale < 1:
        pixels = cv2.resize(pixels, (max(1, round(width * scale)), max(1, round(height * scale))),
                            interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(pixels[:, :, :3])


def _outline_region(pixels: np.ndarray, region_png: bytes) -> np.ndarray:
    """Draw the outline of a painted defect region (any non-zero pixel of the PNG) on the thumbnail."""
    import cv2

    mask = cv2.imdecode(np.frombuffer(region_png, np.uint8), cv2.IMREAD_UNCHANGED)
    if mask is None or mask.size == 0:
        return pixels
    if mask.ndim == 3:
        mask = mask[:, :, 3] if mask.shape[2] == 4 else mask.max(axis=2)
    mask = cv2.resize((mask > 0).astype(np.uint8), (pixels.shape[1], pixels.shape[0]), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = pixels.copy()
    cv2.drawContours(out, contours, -1, REGION_COLOUR, 2)
    return out


# --------------------------------------------------------------------------------------------------
# CSV


INSPECTION_COLUMNS = [
    "id", "inspected_at", "image_path", "file_name", "content_sha256", "score", "raw_score", "verdict",
    "threshold", "uncertain_low", "label", "model_version_id", "model_folder", "source", "user",
]
LABEL_COLUMNS = [
    "image_path", "content_sha256", "label", "note", "labelled_by", "labelled_at", "score", "verdict",
    "model_version_id", "model_folder", "inspection_id", "inspected_at", "has_region",
]


def export_csv(records: Iterable[InspectionRecord], path: str | os.PathLike, *,
               versions: dict[int, ModelVersion] | None = None, users: dict[int, str] | None = None) -> int:
    """Write inspections as CSV (one row each, ``INSPECTION_COLUMNS``); returns the number of rows."""
    versions, users = versions or {}, users or {}
    rows = []
    for r in records:
        version = versions.get(r.model_version_id)
        rows.append([
            r.id, _time(r.inspected_at), r.image_path, r.file_name, r.content_sha256 or "", _num(r.score),
            _num(r.raw_score), r.verdict, _num(r.threshold), _num(r.uncertain_low), r.label or "",
            r.model_version_id or "", version.folder if version else "", r.source, users.get(r.user_id, ""),
        ])
    write_atomically(path, csv_text(INSPECTION_COLUMNS, rows, line_end="\r\n").encode("utf-8-sig"))
    return len(rows)


def export_inspections(records: RecordsService, query: InspectionQuery | None, path: str | os.PathLike) -> int:
    """The inspections matching ``query``, oldest first, as CSV with model folders and user names."""
    query = replace(query or InspectionQuery(), order="oldest")
    store = records.store
    return export_csv(store.iter_inspections(query), path, versions={v.id: v for v in store.model_versions()},
                      users={u.id: u.name for u in store.users()})


AUDIT_COLUMNS = ["id", "at", "user", "action", "subject", "about", "old_value", "new_value"]


def audit_lines(records: RecordsService, last: int | None = None) -> list[list[str]]:
    """The audit log, oldest first (``AUDIT_COLUMNS``), the last ``last`` entries or all of them. ``about`` names
    what a subject stands for where its key does not ('inspection 201: good/kos10_Part6.jpg')."""
    entries = records.audit_log(limit=last)[::-1]
    users = {u.id: u.name for u in records.store.users()}
    about = {subject: records.describe_subject(subject) for subject in {e.subject for e in entries}}
    return [[str(e.id), _time(e.at), users.get(e.user_id, ""), e.action, e.subject,
             about[e.subject] if about[e.subject] != e.subject else "", e.old_value or "", e.new_value or ""]
            for e in entries]


def shown_time(at: str) -> str:
    """An ``audit_lines`` time as a person reads it beside the entry: local date and time to the second."""
    return at[:19].replace("T", " ")


def audit_export(records: RecordsService, path: str | os.PathLike) -> int:
    """The whole audit log as CSV, oldest first (``AUDIT_COLUMNS``); returns the number of entries."""
    rows = audit_lines(records)
    write_atomically(path, csv_text(AUDIT_COLUMNS, rows, line_end="\r\n").encode("utf-8-sig"))
    return len(rows)


def labels_export(records: RecordsService, query: InspectionQuery | None, path: str | os.PathLike) -> int:
    """The labelled inspections matching ``query`` with their current label, as CSV (``LABEL_COLUMNS``).

    One row per labelled inspection; the label, note, author and time are those of its current label.
    """
    query = query or InspectionQuery()
    if query.label == "unlabelled":
        raise AppError("a labels export lists labelled inspections; --label unlabelled selects none")
    if query.label is None:
        query = replace(query, label="labelled")
    query = replace(query, order="oldest")
    store = records.store
    versions = {v.id: v for v in store.model_versions()}
    users = {u.id: u.name for u in store.users()}
    rows, batch = [], []

    def flush():
        current = store.current_labels([r.id for r in batch])
        for r in batch:
            label = current.get(r.id)
            if label is None:
                continue
            version = versions.get(r.model_version_id)
            rows.append([
                r.image_path, r.content_sha256 or "", label.label, label.note, users.get(label.user_id, ""),
                _time(label.created_at), _num(r.score), r.verdict, r.model_version_id or "",
                version.folder if version else "", r.id, _time(r.inspected_at), "yes" if label.region_png else "no",
            ])
        batch.clear()

    for record in store.iter_inspections(query):
        batch.append(record)
        if len(batch) >= 500:
            flush()
    flush()
    write_atomically(path, csv_text(LABEL_COLUMNS, rows, line_end="\r\n").encode("utf-8-sig"))
    return len(rows)


def _time(moment: datetime | None) -> str:
    return moment.astimezone().isoformat(timespec="milliseconds") if moment else ""


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"



