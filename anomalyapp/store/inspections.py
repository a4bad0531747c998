"""Inspections and their labels in the records: recording, querying, counting, labelling."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import date

from anomalyapp.core.errors import StoreError
from anomalyapp.store import schema
from anomalyapp.store.rows import (
    _INSPECTION_COLUMNS,
    _LABEL_COLUMNS,
    _LEDGER_INSPECTION_COLUMNS,
    _PNG_SIGNATURE,
    LABELS,
    ORDERS,
    VERDICTS,
    InspectionQuery,
    InspectionRecord,
    LabelRecord,
    _bound,
    _inspection,
    _label,
    _now_ms_precision,
    from_ms,
    to_ms,
)


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


class InspectionRecords:
    """``RecordStore``'s inspections and labels."""

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
