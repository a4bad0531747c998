"""Camera controls: source, start/stop, pause (freeze), capture, resolution, live status."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from anomalyapp.core.colours import VERDICT_COLOURS

RESOLUTIONS = (None, (640, 480), (1280, 720), (1920, 1080), (2592, 1944))


class CameraPanel(QWidget):
    """Emits intent signals; the camera controller opens sources and runs the live loop."""

    start_requested = Signal(object, object)  # source spec (int index or str path/URL), resolution or None
    stop_requested = Signal()
    pause_toggled = Signal(bool)
    capture_requested = Signal()
    refresh_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.source = QComboBox()
        self.source.setObjectName("camera_source_combo")
        # Short entries (a video by its file name), the full path or URL in the tooltip; the combo fits the
        # dock instead of widening it, and the list shortens long entries in the middle.
        self.source.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.source.setMinimumContentsLength(12)
        self.source.view().setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.source.currentIndexChanged.connect(
            lambda i: self.source.setToolTip(self.source.itemData(i, Qt.ItemDataRole.ToolTipRole) or ""))
        refresh = QPushButton("Refresh")
        refresh.setObjectName("camera_refresh_button")
        refresh.setToolTip("Look for connected cameras again")
        refresh.clicked.connect(self.refresh_requested)
        file_button = QPushButton("Video file…")
        file_button.setObjectName("camera_file_button")
        file_button.clicked.connect(self._choose_file)
        url_button = QPushButton("Stream URL…")
        url_button.setObjectName("camera_url_button")
        url_button.clicked.connect(self._enter_url)
        source_row = QHBoxLayout()
        source_row.addWidget(self.source, 1)
        source_row.addWidget(refresh)
        extra_row = QHBoxLayout()
        extra_row.addWidget(file_button)
        extra_row.addWidget(url_button)

        self.resolution = QComboBox()
        self.resolution.setObjectName("camera_resolution_combo")
        for size in RESOLUTIONS:
            self.resolution.addItem("camera default" if size is None else f"{size[0]} x {size[1]}", size)

        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)  # a narrow dock (1280x800) wraps the rows
        form.addRow("Source", source_row)
        form.addRow("", extra_row)
        form.addRow("Resolution", self.resolution)
        box = QGroupBox("Live inspection")
        box.setLayout(form)

        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("camera_start_button")
        self.start_button.clicked.connect(self._start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("camera_stop_button")
        self.stop_button.clicked.connect(self.stop_requested)
        self.pause_button = QPushButton("Freeze")
        self.pause_button.setObjectName("camera_pause_button")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("Freeze the current frame and its result (Space)")
        self.pause_button.setShortcut("Space")
        self.pause_button.toggled.connect(self.pause_toggled)
        self.capture_button = QPushButton("Capture")
        self.capture_button.setObjectName("camera_capture_button")
        self.capture_button.setToolTip("Save the current frame into the project's captures folder (C)")
        self.capture_button.setShortcut("C")
        self.capture_button.clicked.connect(self.capture_requested)
        buttons = QGridLayout()  # two by two: four in a row would widen a narrow dock
        for index, button in enumerate((self.start_button, self.stop_button, self.pause_button, self.capture_button)):
            buttons.addWidget(button, index // 2, index % 2)

        self.status_label = QLabel("stopped")
        self.status_label.setObjectName("camera_status_label")
        self.status_label.setWordWrap(True)
        self.verdict_label = QLabel("")
        self.verdict_label.setObjectName("camera_verdict_label")
        font = self.verdict_label.font()
        font.setPointSize(font.pointSize() + 10)
        font.setBold(True)
        self.verdict_label.setFont(font)
        self.fps_label = QLabel("")
        self.fps_label.setObjectName("camera_fps_label")

        layout = QVBoxLayout(self)
        layout.addWidget(box)
        layout.addLayout(buttons)
        layout.addWidget(self.verdict_label)
        layout.addWidget(self.status_label)
        layout.addWidget(self.fps_label)
        layout.addStretch(1)
        self.set_running(False)

    def set_cameras(self, cameras) -> None:
        """``cameras``: CameraInfo items; keeps any file or URL entries the user added."""
        custom = [(self.source.itemText(i), self.source.itemData(i)) for i in range(self.source.count())
                  if isinstance(self.source.itemData(i), str)]
        self.source.clear()
        for camera in cameras:
            text = f"Camera {camera.index}: {camera.name} ({camera.width}x{camera.height})"
            self._add_item(text, camera.index, text)
        for text, data in custom:
            self._add_item(text, data, data)
        if self.source.count() == 0:
            self._add_item("no camera found", None, "No camera found: choose a video file or a stream URL below")

    def add_source(self, text: str, spec: str) -> None:
        self._add_item(text, spec, spec)
        self.source.setCurrentIndex(self.source.count() - 1)

    def _add_item(self, text: str, spec, tooltip: str) -> None:
        self.source.addItem(text, spec)
        self.source.setItemData(self.source.count() - 1, tooltip, Qt.ItemDataRole.ToolTipRole)
        if self.source.count() == 1:
            self.source.setToolTip(tooltip)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Video file", "", "Videos (*.mp4 *.avi *.mkv *.mov *.m4v);;All files (*)")
        if path:
            self.add_source(f"File: {Path(path).name}", path)

    def _enter_url(self) -> None:
        url, ok = QInputDialog.getText(self, "Stream URL", "RTSP or HTTP address of the camera stream:")
        if ok and url.strip():
            self.add_source(f"Stream: {url.strip()}", url.strip())

    def _start(self) -> None:
        spec = self.source.currentData()
        if spec is not None:
            self.start_requested.emit(spec, self.resolution.currentData())

    def set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.pause_button.setEnabled(running)
        self.capture_button.setEnabled(running)
        self.source.setEnabled(not running)
        self.resolution.setEnabled(not running)
        if not running:
            self.pause_button.setChecked(False)
            self.fps_label.setText("")

    def show_status(self, text: str) -> None:
        self.status_label.setText(text)

    def show_verdict(self, verdict: str, score: float) -> None:
        self.verdict_label.setText(f"{verdict}  {score:.2f}")
        colour = VERDICT_COLOURS.get(verdict)
        # A badge in the table's verdict colours: its own text colour reads on light and dark palettes.
        self.verdict_label.setStyleSheet(
            f"background-color: {colour.fill}; color: {colour.on_fill}; border-radius: 4px; padding: 2px 8px"
            if colour is not None else ""
        )
