"""Opening a project whose records were changed outside the app warns in the window, naming the change."""

from __future__ import annotations

import sqlite3

import pytest

from anomalyapp.services import project as projects
from anomalyapp.services.records import RecordsService

pytestmark = pytest.mark.gui


def _project(tmp_path, name):
    project = projects.create_project(tmp_path / name, name)
    projects.set_up_single_user(project, "solo")
    with RecordsService(project.root) as records:
        records.set_setting("note", "first shift", records.auth.auto_login())
    return project


def test_changed_records_warn_at_open_and_intact_ones_do_not(qtbot, window, tmp_path):
    intact = _project(tmp_path, "intact")
    window.set_project(intact)
    assert window.access.user is not None
    assert getattr(window, "last_error", None) is None or "outside anomalyapp" not in window.last_error

    changed = _project(tmp_path, "changed")
    conn = sqlite3.connect(changed.root / "records.sqlite3", isolation_level=None)
    conn.execute("DROP TRIGGER settings_ledger_update")
    conn.execute("UPDATE settings SET value = 'second shift' WHERE key = 'note'")
    conn.close()
    window.set_project(changed)
    assert "changed outside anomalyapp" in window.last_error
    assert "settings note" in window.last_error and "settings_ledger_update" in window.last_error
    assert window.access.user is not None  # a warning, not a lock-out: the supervisor decides what to do
