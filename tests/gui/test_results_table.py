"""ResultsModel / ResultsFilter / ResultsPanel: instant re-verdicts, filters, numeric sort, selection."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage, QPixmap

from anomalyapp.gui.widgets.results_table import (
    ROW_ROLE,
    ResultRow,
    ResultsFilter,
    ResultsModel,
    ResultsPanel,
    Verdicts,
)

pytestmark = pytest.mark.gui


def _row(name: str, score: float | None, label: str = "", thumbnail: QImage | None = None) -> ResultRow:
    return ResultRow(
        Path("/line") / name, score, None if score is None else score * 4.0, label=label,
        error="cannot decode" if score is None else "", thumbnail=thumbnail,
    )


SCORES = {"a.png": 0.10, "b.png": 0.45, "c.png": 0.55, "d.png": 2.0, "e.png": 10.0, "f.png": 0.9}


@pytest.fixture
def model(qtbot) -> ResultsModel:
    m = ResultsModel()
    m.add_results([_row(n, s) for n, s in SCORES.items()] + [_row("broken.png", None)])
    return m


@pytest.fixture
def panel(qtbot, model) -> ResultsPanel:
    p = ResultsPanel(model)
    qtbot.addWidget(p)
    p.resize(500, 400)
    return p


def _shown_names(proxy: ResultsFilter) -> list[str]:
    return [proxy.data(proxy.index(r, ResultsModel.NAME)) for r in range(proxy.rowCount())]


# -- Verdicts ------------------------------------------------------------------------------------


def test_verdicts_rule():
    v = Verdicts()
    assert [v.verdict(s) for s in (0.0, 0.499, 0.5, 3.0, None, math.nan)] == ["OK", "OK", "NG", "NG", "Error", "Error"]
    band = Verdicts(0.6, 0.4)
    assert [band.verdict(s) for s in (0.39, 0.4, 0.59, 0.6)] == ["OK", "Review", "Review", "NG"]
    assert band.verdicts([0.39, 0.4, 0.6, None]) == ["OK", "Review", "NG", "Error"]
    assert Verdicts(0.5, 0.5).verdict(0.49) == "OK"  # an empty band


# -- model ---------------------------------------------------------------------------------------


def test_counts_scores_find_and_rows(model):
    assert model.rowCount() == 7 and model.columnCount() == 6
    assert model.counts() == {"OK": 2, "NG": 4, "Review": 0, "Error": 1}
    np.testing.assert_allclose(model.scores(), list(SCORES.values()))
    assert model.find(Path("/line/d.png")) == 3
    assert model.find("/line/d.png") == 3
    assert model.find("/line/missing.png") is None
    assert model.row_at(3).path.name == "d.png"
    assert model.row_at(model.index(3, 0)).score == 2.0
    assert model.data(model.index(3, ResultsModel.SCORE)) == "2.000"
    assert model.data(model.index(6, ResultsModel.VERDICT)) == "Error"


def test_set_verdicts_rejudges_with_one_data_changed_and_no_reset(qtbot, model):
    changes, resets = [], []
    model.dataChanged.connect(lambda tl, br, roles: changes.append((tl.row(), tl.column(), br.row(), br.column())))
    model.modelAboutToBeReset.connect(lambda: resets.append(1))
    model.layoutAboutToBeChanged.connect(lambda: resets.append(2))

    model.set_verdicts(Verdicts(threshold=1.0))

    assert model.counts() == {"OK": 4, "NG": 2, "Review": 0, "Error": 1}
    assert changes == [(0, ResultsModel.VERDICT, 6, ResultsModel.VERDICT)]
    assert resets == []
    model.set_verdicts(Verdicts(threshold=1.0))  # the same rule: nothing to do
    assert len(changes) == 1


def test_uncertain_band_gives_review(model):
    model.set_verdicts(Verdicts(threshold=0.5, uncertain_low=0.4))
    assert model.counts() == {"OK": 1, "NG": 4, "Review": 1, "Error": 1}
    assert model.data(model.index(1, ResultsModel.VERDICT)) == "Review"
    assert model.verdicts() == Verdicts(0.5, 0.4)


def test_verdict_colours_are_explicit(model):
    index = model.index(0, ResultsModel.VERDICT)
    bg = model.data(index, Qt.ItemDataRole.BackgroundRole).color()
    fg = model.data(index, Qt.ItemDataRole.ForegroundRole).color()
    assert bg != fg and bg.alpha() == 255
    assert model.data(model.index(3, ResultsModel.VERDICT), Qt.ItemDataRole.BackgroundRole).color() != bg


def test_set_label_clear_and_validation(qtbot, model):
    with qtbot.waitSignal(model.dataChanged, timeout=1000) as blocker:
        model.set_label(0, "NG")
    assert blocker.args[0].column() == ResultsModel.LABEL
    assert model.row_at(0).label == "NG"
    with pytest.raises(ValueError):
        model.set_label(0, "bad")
    with qtbot.waitSignal(model.modelReset, timeout=1000):
        model.clear()
    assert model.rowCount() == 0 and model.counts() == {"OK": 0, "NG": 0, "Review": 0, "Error": 0}
    assert model.find("/line/a.png") is None and model.scores().size == 0


def test_thumbnail_is_scaled_to_64_px(qtbot):
    image = QImage(256, 128, QImage.Format.Format_RGB32)
    image.fill(QColor("darkcyan"))
    m = ResultsModel()
    m.add_result(_row("t.png", 0.2, thumbnail=image))
    m.add_result(_row("u.png", 0.2))
    pixmap = m.data(m.index(0, ResultsModel.THUMBNAIL), Qt.ItemDataRole.DecorationRole)
    assert isinstance(pixmap, QPixmap) and (pixmap.width(), pixmap.height()) == (64, 32)
    assert m.data(m.index(1, ResultsModel.THUMBNAIL), Qt.ItemDataRole.DecorationRole) is None


def test_batches_insert_once_and_scale_to_thousands(qtbot):
    m = ResultsModel()
    inserted = []
    m.rowsInserted.connect(lambda _p, first, last: inserted.append((first, last)))
    first = m.add_results([_row(f"{i}.png", i / 5000) for i in range(5000)])
    assert first == 0 and inserted == [(0, 4999)]
    assert m.add_result(_row("x.png", 0.1)) == 5000
    m.set_verdicts(Verdicts(0.8))
    assert m.counts()["NG"] == 1000


# -- filter and sort ------------------------------------------------------------------------------


def test_filter_by_verdict_and_name_refilters_after_threshold_change(panel, model):
    proxy = panel.proxy()
    panel.verdict_filter.setCurrentText("NG")
    assert _shown_names(proxy) == ["c.png", "d.png", "e.png", "f.png"]
    model.set_verdicts(Verdicts(threshold=1.0))
    assert _shown_names(proxy) == ["d.png", "e.png"]
    model.set_verdicts(Verdicts(threshold=1.0, uncertain_low=0.5))
    panel.verdict_filter.setCurrentText("Review")
    assert _shown_names(proxy) == ["c.png", "f.png"]
    panel.verdict_filter.setCurrentText("Error")
    assert _shown_names(proxy) == ["broken.png"]

    panel.verdict_filter.setCurrentText("All")
    panel.name_filter.setText("B")  # case-insensitive substring
    assert _shown_names(proxy) == ["b.png", "broken.png"]
    panel.name_filter.setText("")
    assert proxy.rowCount() == 7


def test_the_name_filter_also_finds_the_folder(qtbot):
    """An MVTec test tree's parts share names across folders, and the folder says the defect class: typing "good"
    shows the good ones."""
    m = ResultsModel()
    m.add_results([ResultRow(Path("/test") / folder / "001.png", 0.2, 0.8) for folder in ("good", "crack")]
                  + [ResultRow(Path("/test/crack/002.png"), 0.3, 1.2)])
    panel = ResultsPanel(m)
    qtbot.addWidget(panel)
    proxy = panel.proxy()

    def shown_paths():
        return [str(m.row_at(proxy.mapToSource(proxy.index(r, 0)).row()).path) for r in range(proxy.rowCount())]

    panel.name_filter.setText("GOOD")
    assert shown_paths() == ["/test/good/001.png"]
    panel.name_filter.setText("001")
    assert sorted(shown_paths()) == ["/test/crack/001.png", "/test/good/001.png"]
    panel.name_filter.setText("crack")
    assert sorted(shown_paths()) == ["/test/crack/001.png", "/test/crack/002.png"]


def test_unlabelled_filter_follows_labels(panel, model):
    panel.verdict_filter.setCurrentText("Unlabelled")
    assert panel.proxy().rowCount() == 7
    model.set_label(model.find("/line/e.png"), "NG")
    assert "e.png" not in _shown_names(panel.proxy())
    assert panel.proxy().rowCount() == 6


def test_unknown_verdict_filter_is_rejected():
    with pytest.raises(ValueError):
        ResultsFilter().set_verdict_filter("Maybe")


def test_score_sorts_numerically(panel):
    panel.view.sortByColumn(ResultsModel.SCORE, Qt.SortOrder.DescendingOrder)
    assert _shown_names(panel.proxy()) == ["e.png", "d.png", "f.png", "c.png", "b.png", "a.png", "broken.png"]
    panel.view.sortByColumn(ResultsModel.SCORE, Qt.SortOrder.AscendingOrder)
    assert _shown_names(panel.proxy())[:3] == ["broken.png", "a.png", "b.png"]


def test_insertion_order_until_the_user_sorts(panel):
    assert _shown_names(panel.proxy()) == [*SCORES, "broken.png"]


def test_score_header_clicks_toggle_ascending_descending_never_unsorted(qtbot, panel):
    from PySide6.QtCore import QPoint

    panel.show()
    qtbot.waitExposed(panel)
    header = panel.view.horizontalHeader()
    ascending = ["broken.png", "a.png", "b.png", "c.png", "f.png", "d.png", "e.png"]
    seen = []
    for _ in range(5):
        x = header.sectionViewportPosition(ResultsModel.SCORE) + header.sectionSize(ResultsModel.SCORE) // 2
        qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, header.height() // 2))
        seen.append(_shown_names(panel.proxy()))
        assert header.sortIndicatorSection() == ResultsModel.SCORE
    assert seen == [ascending, ascending[::-1], ascending, ascending[::-1], ascending]


# -- panel -----------------------------------------------------------------------------------------


def test_view_configuration(panel):
    view = panel.view
    assert view.objectName() == "results_view"
    assert view.isSortingEnabled() and view.alternatingRowColors()
    assert view.verticalHeader().isHidden()
    assert view.verticalHeader().defaultSectionSize() == 70
    assert panel.name_filter.placeholderText() == "Filter by name or folder"
    assert panel.findChild(type(panel.verdict_filter), "verdict_filter") is panel.verdict_filter
    assert [panel.verdict_filter.itemText(i) for i in range(panel.verdict_filter.count())] == list(
        ResultsFilter.VERDICT_FILTERS
    )


def test_select_next_previous_emit_current_changed(qtbot, panel):
    with qtbot.waitSignal(panel.current_changed, timeout=1000) as blocker:
        panel.select_next()
    assert blocker.args[0].path.name == "a.png"
    with qtbot.waitSignal(panel.current_changed, timeout=1000) as blocker:
        panel.select_next()
    assert blocker.args[0].path.name == "b.png"
    with qtbot.waitSignal(panel.current_changed, timeout=1000) as blocker:
        panel.select_previous()
    assert blocker.args[0].path.name == "a.png"
    with qtbot.assertNotEmitted(panel.current_changed):
        panel.select_previous()  # already at the top
    assert panel.current_row().path.name == "a.png"
    with qtbot.waitSignal(panel.current_changed, timeout=1000) as blocker:
        panel.model().clear()
    assert blocker.args == [None]


def test_selection_survives_a_reverdict(panel, model):
    panel.select_source_row(3)
    model.set_verdicts(Verdicts(threshold=3.0, uncertain_low=1.0))
    assert panel.current_source_row() == 3
    assert panel.view.selectionModel().isRowSelected(panel.view.currentIndex().row())
    assert panel.view.currentIndex().data(ROW_ROLE).path.name == "d.png"


def test_summary_label(panel, model):
    assert panel.summary_label.text() == "7 images: 2 OK, 4 NG, 1 error"
    model.set_verdicts(Verdicts(0.5, 0.4))
    assert panel.summary_label.text() == "7 images: 1 OK, 4 NG, 1 review, 1 error"
    panel.verdict_filter.setCurrentText("NG")
    assert panel.summary_label.text().endswith("4 shown")
    model.clear()
    assert panel.summary_label.text() == "No images yet"


def test_screenshot(qtbot, panel, model, tmp_path):
    model.set_verdicts(Verdicts(0.5, 0.4))
    panel.show()
    panel.select_next()
    image = panel.grab()
    assert not image.isNull()
    assert image.save(str(tmp_path / "results_panel.png"))
