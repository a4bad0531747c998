"""The bar under the results: a note for the next decision, OK / NG buttons and the paint toggle.

The single-letter keys (G, B, D, N, P) act wherever the note field does not have the focus; in the note field
they type. Enter (or Ctrl+Enter) keeps the note and leaves the field, Esc leaves it too: ``note_finished`` then
asks the window to give the focus back to the list, so the next key is a decision again.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLineEdit, QPushButton, QVBoxLayout, QWidget

_LEAVE_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape)


class NoteEdit(QLineEdit):
    """A one-line note that Enter, Ctrl+Enter or Esc leaves (``finished``), keeping what was typed."""

    finished = Signal()

    def event(self, event: QEvent) -> bool:
        # Esc is also the window's Cancel shortcut: in the note it only leaves the field.
        if event.type() == QEvent.Type.ShortcutOverride and event.key() in _LEAVE_KEYS:
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt override)
        if event.key() in _LEAVE_KEYS:
            event.accept()
            self.finished.emit()
            return
        super().keyPressEvent(event)


class ReviewBar(QWidget):
    decision_requested = Signal(str)  # "OK" or "NG"
    paint_toggled = Signal(bool)
    note_finished = Signal()  # Enter or Esc in the note: the focus should go back to the list

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.note_edit = NoteEdit()
        self.note_edit.setObjectName("review_note")
        self.note_edit.setPlaceholderText("Note for the next decision (optional)")
        self.note_edit.setToolTip("Keys type here; Enter or Esc returns to the list, where G and B decide")
        self.note_edit.finished.connect(self._leave_note)
        ok_button = QPushButton("OK — false positive (G)")
        ok_button.setObjectName("review_ok_button")
        ok_button.clicked.connect(lambda: self.decision_requested.emit("OK"))
        ng_button = QPushButton("NG — confirmed (B)")
        ng_button.setObjectName("review_ng_button")
        ng_button.clicked.connect(lambda: self.decision_requested.emit("NG"))
        self.paint_toggle = QCheckBox("Paint region (D)")
        self.paint_toggle.setObjectName("review_paint_toggle")
        self.paint_toggle.toggled.connect(self.paint_toggled)
        note_row = QHBoxLayout()  # two short rows rather than one wide one: the dock may be narrow
        note_row.addWidget(self.note_edit, 1)
        note_row.addWidget(self.paint_toggle)
        buttons = QHBoxLayout()
        buttons.addWidget(ok_button)
        buttons.addWidget(ng_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(note_row)
        layout.addLayout(buttons)

    def _leave_note(self) -> None:
        self.note_edit.clearFocus()
        self.note_finished.emit()

    def note(self) -> str:
        return self.note_edit.text().strip()

    def set_painting(self, on: bool) -> None:
        if self.paint_toggle.isChecked() != on:
            self.paint_toggle.setChecked(on)

    def clear(self) -> None:
        """After a decision: the note and the painting were for that part only."""
        self.note_edit.clear()
        self.set_painting(False)
        self.paint_toggled.emit(False)
