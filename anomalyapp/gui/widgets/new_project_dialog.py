"""New project: a name, where its folder goes, the good images it learns from (with a preview), and a confirm.

The project folder is ``location/name``, shown before anything is created; a folder that holds other files
is refused (``services.project.check_new_project_folder``), so choosing a folder in a file dialog and
pressing Return can no longer turn a folder full of other things into a project.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QImageReader, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from anomalyapp.core.errors import AppError
from anomalyapp.services import project as projects

PREVIEW_SIZE = 72


class NewProjectDialog(QDialog):
    def __init__(self, create, parent: QWidget | None = None, location: str | None = None):
        """``create(root: Path, name: str, good_folder: str | None) -> bool``: makes the project (and shows
        why not); the dialog closes when it returns True."""
        super().__init__(parent)
        self.setObjectName("new_project_dialog")
        self.setWindowTitle("New project")
        self._create = create
        self.name = QLineEdit()
        self.name.setObjectName("new_project_name")
        self.name.setPlaceholderText("e.g. washers line 2")
        self.location = QLineEdit(location or str(Path.home()))
        self.location.setObjectName("new_project_location")
        self.good_folder = QLineEdit()
        self.good_folder.setObjectName("new_project_good_folder")
        self.good_folder.setPlaceholderText("Folder of good images (can be chosen later)")
        self.target = QLabel()
        self.target.setObjectName("new_project_target")
        self.target.setWordWrap(True)
        self.preview_text = QLabel()
        self.preview_text.setObjectName("new_project_preview_text")
        self.preview_text.setWordWrap(True)
        self.thumbnails = QHBoxLayout()
        self.thumbnails.setAlignment(Qt.AlignmentFlag.AlignLeft)
        self.message = QLabel()
        self.message.setObjectName("new_project_message")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #b00020")

        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Location", self._with_browse(self.location, "Where the project folder goes"))
        form.addRow("Project folder", self.target)
        form.addRow("Good images", self._with_browse(self.good_folder, "Folder of good images"))
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.create_button = self.buttons.addButton("Create project", QDialogButtonBox.ButtonRole.AcceptRole)
        self.create_button.setObjectName("new_project_create")
        self.buttons.accepted.connect(self._confirm)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.preview_text)
        layout.addLayout(self.thumbnails)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        for edit in (self.name, self.location):
            edit.textChanged.connect(self._check)
        self.good_folder.textChanged.connect(self._preview)
        self._check()
        self._preview()
        self.resize(640, 0)

    def _with_browse(self, edit: QLineEdit, title: str) -> QWidget:
        button = QPushButton("Browse…")
        button.setObjectName(f"{edit.objectName()}_browse")
        button.clicked.connect(lambda: self._browse(edit, title))
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(edit, 1)
        layout.addWidget(button)
        return row

    def _browse(self, edit: QLineEdit, title: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, title, edit.text())
        if folder:
            edit.setText(folder)

    def project_folder(self) -> Path | None:
        name, location = self.name.text().strip(), self.location.text().strip()
        return Path(location) / name if name and location else None

    def _check(self) -> bool:
        """Whether the project can be created as shown; says why not, naming the folder."""
        root = self.project_folder()
        self.target.setText(str(root) if root else "give the project a name and a location")
        problem = ""
        if root is None:
            problem = "a project needs a name and a location"
        elif any(sep in self.name.text() for sep in ("/", "\\")):
            problem = "the name is a folder name: no / or \\ in it"
        else:
            try:
                projects.check_new_project_folder(root)
            except AppError as error:
                problem = str(error)
        self.message.setText(problem if root is not None else "")
        self.create_button.setEnabled(not problem)
        return not problem

    def _preview(self) -> None:
        while self.thumbnails.count():
            self.thumbnails.takeAt(0).widget().deleteLater()
        folder = self.good_folder.text().strip()
        if not folder:
            self.preview_text.setText("No good images chosen yet: the project can be created and trained later.")
            return
        try:
            preview = projects.preview_good_images(folder)
        except AppError as error:
            self.preview_text.setText(f"No training images: {error}")
            return
        self.preview_text.setText(f"{preview.count} good images to learn from")
        for path in preview.sample:
            reader = QImageReader(str(path))
            size = reader.size()
            if size.isValid():
                size.scale(PREVIEW_SIZE, PREVIEW_SIZE, Qt.AspectRatioMode.KeepAspectRatio)
                reader.setScaledSize(size)
            thumbnail = QLabel()
            thumbnail.setToolTip(path.name)
            thumbnail.setPixmap(QPixmap.fromImage(reader.read()))
            self.thumbnails.addWidget(thumbnail)

    def _confirm(self) -> None:
        if self._check() and self._create(self.project_folder(), self.name.text().strip(),
                                          self.good_folder.text().strip() or None):
            self.accept()
