"""The check a project gets when it is opened: the whole chain while it is small, the quick one beyond."""

from __future__ import annotations

import sqlite3

from anomalyapp.services import records as records_service
from anomalyapp.services.records import InspectionRecord, RecordsService


def _edit_outside_the_app(root, trigger="inspections_ledger_update", put_back=False):
    conn = sqlite3.connect(root / "records.sqlite3", isolation_level=None)
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (trigger,)).fetchone()[0]
    conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute("UPDATE inspections SET verdict = 'OK' WHERE id = 2")
    if put_back:
        conn.execute(sql)
    conn.close()


def _project(tmp_path):
    with RecordsService(tmp_path) as records:
        records.store.record_inspections([InspectionRecord(f"/p/{i}.png", 0.9, "NG", 0.5) for i in range(3)])
        assert records.check_at_open() is None
    return tmp_path


def test_small_records_are_checked_whole_at_open_and_the_changed_row_is_named(tmp_path):
    root = _project(tmp_path)
    _edit_outside_the_app(root, put_back=True)
    with RecordsService(root) as records:
        warning = records.check_at_open()
        assert records.verify(full=False).intact  # the trigger is back: only the whole check sees the edit
    assert "changed outside anomalyapp" in warning and "inspections 2" in warning
    assert f"anomalyapp records verify {root}" in warning


def test_large_records_get_the_quick_check_at_open(tmp_path, monkeypatch):
    root = _project(tmp_path)
    _edit_outside_the_app(root)
    monkeypatch.setattr(records_service, "OPEN_FULL_CHECK_ENTRIES", 1)
    with RecordsService(root) as records:
        warning = records.check_at_open()
        assert not records.verify().intact
    assert "trigger(s) dropped: inspections_ledger_update" in warning
    assert "inspections 2" not in warning  # rows are named by the verify command
