"""The status bar's message line: elided to the room it has, the whole text in its tooltip.

``QStatusBar.showMessage`` cuts a long message off mid-letter where the permanent labels (user, device, model,
ms/image) begin; this line sits in the bar's stretching part instead, so a long message ends in "…" and the
permanent labels keep their room. It paints its text itself: a new message (one per inspected image, one per
threshold step) only repaints the line, where a QLabel's new text would lay the whole window out again.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget


class StatusLine(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("status_line")
        self._message = ""
        # Ignored: the bar gives the line what the permanent labels leave, however long the message.
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._expiry = QTimer(self)
        self._expiry.setSingleShot(True)
        self._expiry.timeout.connect(lambda: self.show_message(""))

    def show_message(self, text: str, milliseconds: int = 0) -> None:
        """Show ``text`` (for ``milliseconds``, 0: until the next message)."""
        self._message = " ".join(text.split())  # one line: newlines would be cut off by the bar's height
        self._update_tooltip()
        self.update()
        if milliseconds > 0:
            self._expiry.start(milliseconds)
        else:
            self._expiry.stop()

    def message(self) -> str:
        """The whole message, however much of it is shown."""
        return self._message

    def text(self) -> str:
        """What is shown: the message, elided to the line's width."""
        return self.fontMetrics().elidedText(self._message, Qt.TextElideMode.ElideRight, self.contentsRect().width())

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        return QSize(60, self.fontMetrics().height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        return self.sizeHint()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        self._update_tooltip()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        painter = QPainter(self)
        painter.setPen(self.palette().windowText().color())
        painter.drawText(self.contentsRect(), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, self.text())

    def _update_tooltip(self) -> None:
        self.setToolTip(self._message if self.text() != self._message else "")
