"""Where the window's panels sit: the docks, their scroll areas, the status bar, and the saved layout.

The window has to work on a 1280x800 panel PC as well as on a desktop screen: the tall panels (the training form,
the camera panel) scroll rather than push the window's minimum height past the screen, and the forms wrap their
long labels, so the window's minimum size stays well inside 1280x800 and the status bar stays on the screen.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QDockWidget, QFrame, QLabel, QMainWindow, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from anomalyapp.gui.widgets.status_line import StatusLine

SETTINGS_VERSION = 2  # 2: scrolling setup panels (an older saved dock state would squeeze them)
_GEOMETRY_KEY = f"window/v{SETTINGS_VERSION}/geometry"
_STATE_KEY = f"window/v{SETTINGS_VERSION}/state"
PERMANENT_LABELS = (("user_label", "not logged in"), ("device_label", "device: —"), ("model_label", "no model"),
                    ("latency_label", ""))


def _scrolled(widget: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # the panels wrap instead
    # Never narrower than the panel itself, with room for the scroll bar: it scrolls up and down only.
    area.setMinimumWidth(widget.minimumSizeHint().width() + area.verticalScrollBar().sizeHint().width())
    return area


def _dock(window: QMainWindow, title: str, widget: QWidget, area, name: str) -> QDockWidget:
    dock = QDockWidget(title, window)
    dock.setObjectName(name)
    dock.setWidget(widget)
    dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
    window.addDockWidget(area, dock)
    return dock


def build(window) -> None:
    """Put the window's panels (already built) into tabs, docks and the status bar."""
    window.setCentralWidget(window.viewer)
    window.left_tabs = QTabWidget()
    window.left_tabs.setObjectName("left_tabs")
    window.training_tab, window.camera_tab = _scrolled(window.training_panel), _scrolled(window.camera_panel)
    window.left_tabs.addTab(window.training_tab, "Project && training")
    window.left_tabs.addTab(window.camera_tab, "Camera")
    results = QWidget()
    layout = QVBoxLayout(results)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(window.results_panel, 1)
    layout.addWidget(window.review_bar)
    window.setup_dock = _dock(window, "Setup", window.left_tabs, Qt.DockWidgetArea.LeftDockWidgetArea, "setup_dock")
    window.results_dock = _dock(window, "Results", results, Qt.DockWidgetArea.RightDockWidgetArea, "results_dock")
    window.threshold_dock = _dock(window, "Threshold", window.threshold_panel, Qt.DockWidgetArea.BottomDockWidgetArea,
                                  "threshold_dock")
    window.status_line = StatusLine()
    window.statusBar().addWidget(window.status_line, 1)
    for name, text in PERMANENT_LABELS:
        label = QLabel(text)
        label.setObjectName(name)
        setattr(window, name, label)
        window.statusBar().addPermanentWidget(label)


def restore(window: QMainWindow, settings: QSettings) -> None:
    geometry, state = settings.value(_GEOMETRY_KEY), settings.value(_STATE_KEY)
    if geometry is not None:
        window.restoreGeometry(geometry)
    else:  # the first start fits the screen (a 1280x800 panel PC too)
        room = window.screen().availableGeometry()
        window.resize(min(1500, room.width() - 40), min(950, room.height() - 60))
    if state is not None:
        window.restoreState(state)
    else:  # first start: the image gets the most room; the threshold strip stays short
        narrow = window.width() < 1400
        window.resizeDocks([window.setup_dock, window.results_dock], [290 if narrow else 360, 400 if narrow else 430],
                           Qt.Orientation.Horizontal)
        window.resizeDocks([window.threshold_dock], [200 if narrow else 250], Qt.Orientation.Vertical)


def save(window: QMainWindow, settings: QSettings) -> None:
    settings.setValue(_GEOMETRY_KEY, window.saveGeometry())
    settings.setValue(_STATE_KEY, window.saveState())
