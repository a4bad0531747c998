"""Project → Watch folder: which folder, how to sort, how many files may wait; Start/Stop and the watch's status.

A thin view: it emits what the person asked for (``start_requested`` with the choices, ``stop_requested``) and
shows what the controller tells it (``set_running``, ``set_status``); the watch itself is the controller's.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

SORT_CHOICES = (("leave files where they are", None), ("move into OK/, NG/, Review/", "move"),
                ("copy into OK/, NG/, Review/", "copy"))


class WatchFolderDialog(QDialog):
    start_requested = Signal(dict)  # folder, sort, queue_limit, overlay_dir
    stop_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("watch_dialog")
        self.setWindowTitle("Watch folder")
        self.folder_edit = QLineEdit()
        self.folder_edit.setObjectName("watch_folder_edit")
        self.folder_edit.setPlaceholderText("the folder the camera software writes into")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        self.sort_combo = QComboBox()
        for text, value in SORT_CHOICES:
            self.sort_combo.addItem(text, value)
        self.queue_spin = QSpinBox()
        self.queue_spin.setRange(1, 10_000)
        self.queue_spin.setValue(20)
        self.queue_spin.setToolTip("files that may wait for the model; beyond, the oldest waiting one is dropped "
                                   "(and reported)")
        self.overlay_edit = QLineEdit()
        self.overlay_edit.setPlaceholderText("optional: a folder for the overlay images")
        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow("Folder", folder_row)
        form.addRow("Inspected files", self.sort_combo)
        form.addRow("Queue", self.queue_spin)
        form.addRow("Overlays", self.overlay_edit)
        self.status_label = QLabel("not watching")
        self.status_label.setObjectName("watch_status")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.start_button = QPushButton("Start watching")
        self.start_button.setObjectName("watch_start_button")
        self.start_button.clicked.connect(self._start_or_stop)
        close = QPushButton("Close")
        close.clicked.connect(self.hide)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.start_button)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)
        self._running = False

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder to watch", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def _start_or_stop(self) -> None:
        if self._running:
            self.stop_requested.emit()
            return
        self.start_requested.emit({
            "folder": self.folder_edit.text().strip(),
            "sort": self.sort_combo.currentData(),
            "queue_limit": self.queue_spin.value(),
            "overlay_dir": self.overlay_edit.text().strip() or None,
        })

    def set_running(self, running: bool) -> None:
        self._running = running
        self.start_button.setText("Stop watching" if running else "Start watching")
        for widget in (self.folder_edit, self.sort_combo, self.queue_spin, self.overlay_edit):
            widget.setEnabled(not running)

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)
