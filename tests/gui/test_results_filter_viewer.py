"""The viewer shows the part the results list has selected: never an earlier selection whose image arrived late,
and nothing when a filter leaves nothing selected. A decision key acts on the selection, so this is what the
technician labels."""

from __future__ import annotations

import pytest

from tests.gui.test_review_and_roles import OPERATOR, _inspect, _open_and_log_in, project  # noqa: F401

pytestmark = pytest.mark.gui


def _source_row(panel, path):
    return next(i for i in range(panel.model().rowCount()) if panel.model().row_at(i).path == path)


def test_an_image_that_arrives_after_a_newer_selection_is_not_shown(qtbot, window, project, demo_line):  # noqa: F811
    _open_and_log_in(qtbot, window, project, OPERATOR)
    _inspect(qtbot, window, demo_line)
    panel, viewer, inspection = window.results_panel, window.viewer, window.inspection
    paths = [panel.model().row_at(i).path for i in range(panel.model().rowCount())]
    late, shown = paths[1], paths[2]
    inspection._cache.pop(str(late), None)  # its image must be re-scored in the background
    assert str(shown) in inspection._cache
    with inspection.session_lock:  # hold the re-scoring back until the next selection is on screen
        panel.select_source_row(_source_row(panel, late))
        qtbot.wait(100)
        panel.select_source_row(_source_row(panel, shown))
        assert viewer.title_label.text().startswith(shown.name)
    qtbot.waitUntil(lambda: str(late) in inspection._cache, timeout=20000)  # the late image has arrived
    qtbot.wait(100)
    assert panel.current_row().path == shown and viewer.title_label.text().startswith(shown.name)


def test_a_filter_that_hides_every_result_empties_the_viewer(qtbot, window, project, demo_line):  # noqa: F811
    _open_and_log_in(qtbot, window, project, OPERATOR)
    _inspect(qtbot, window, demo_line)
    panel, viewer = window.results_panel, window.viewer
    qtbot.waitUntil(lambda: viewer.heat_item.image is not None, timeout=10000)
    panel.name_filter.setText("no part has this name")
    assert panel.current_row() is None and viewer.heat_item.image is None and not viewer.title_label.text()
    panel.name_filter.clear()
    panel.select_source_row(0)
    qtbot.waitUntil(lambda: viewer.heat_item.image is not None, timeout=10000)
