"""Project → Watch folder as a person uses it: choose a real folder, start, parts arrive written in pieces, rows
appear in the table with their records, the status line counts, stop."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

sys.path.insert(0, str(Path(__file__).parent.parent / "services"))
from hot_folder_helpers import make_project, part_png, train_random_model  # noqa: E402


@pytest.fixture(scope="module")
def model(demo_line, tmp_path_factory):
    return train_random_model(demo_line, tmp_path_factory.mktemp("watch_gui_model") / "model")


def test_watching_a_folder_fills_the_table_as_parts_arrive_and_stops(window, qtbot, tmp_path, model, demo_line):
    from anomalyapp.services.records import InspectionQuery, RecordsService

    project = make_project(tmp_path / "project", model, demo_line)
    window.set_project(project)
    qtbot.waitUntil(lambda: window.inspection.session is not None, timeout=60000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()

    window.watch_folder_action.trigger()
    dialog = window.watch_dialog
    assert dialog.isVisible()
    dialog.folder_edit.setText(str(inbox))
    dialog.sort_combo.setCurrentIndex(dialog.sort_combo.findData("move"))
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.watch.running and "watching" in window.status_line.message(), timeout=10000)
    assert dialog.start_button.text() == "Stop watching" and not dialog.folder_edit.isEnabled()
    assert str(inbox.resolve()) in dialog.status_label.text() and "queued" in dialog.status_label.text()

    table = window.results_panel.model()
    data = part_png(demo_line, 0)
    with open(inbox / "part-1.png", "wb") as camera:  # the camera writes in pieces
        for start in range(0, len(data), len(data) // 4 + 1):
            camera.write(data[start:start + len(data) // 4 + 1])
            camera.flush()
            qtbot.wait(150)
            assert table.rowCount() == 0, "a row appeared before the file was complete"
    qtbot.waitUntil(lambda: table.rowCount() == 1, timeout=20000)
    (inbox / "part-2.png").write_bytes(part_png(demo_line, 1))
    (inbox / "notes.txt").write_text("not a part")
    qtbot.waitUntil(lambda: table.rowCount() == 2 and "notes.txt" in dialog.status_label.text(), timeout=20000)

    rows = [table.row_at(i) for i in range(2)]
    assert [row.path.name for row in rows] == ["part-1.png", "part-2.png"]
    assert all(row.record_id is not None and row.thumbnail is not None for row in rows)
    assert all(row.path.parent.parent == inbox.resolve() for row in rows)  # moved into OK/, NG/ or Review/
    qtbot.waitUntil(lambda: "0 queued, 0 dropped, 2 inspected" in dialog.status_label.text(), timeout=5000)
    assert "2 inspected" in window.status_line.message()

    # A new model version loads (here: the same folder again): the watch goes on with it.
    first_job = window.watch.job
    window.inspection.load_model(window.project.model_path)
    qtbot.waitUntil(lambda: window.watch.job is not first_job and window.watch.running, timeout=30000)
    (inbox / "part-2b.png").write_bytes(part_png(demo_line, 3))
    qtbot.waitUntil(lambda: table.rowCount() == 3, timeout=20000)

    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.watch.running, timeout=10000)
    assert dialog.start_button.text() == "Start watching" and dialog.folder_edit.isEnabled()
    assert "stopped watching" in dialog.status_label.text()
    (inbox / "part-3.png").write_bytes(part_png(demo_line, 2))
    time.sleep(1.0)
    qtbot.wait(200)
    assert table.rowCount() == 3  # stopped means stopped
    with RecordsService(project.root) as records:
        names = sorted(r.file_name for r in records.query(InspectionQuery(source="watch")))
    assert names == ["part-1.png", "part-2.png", "part-2b.png"]
