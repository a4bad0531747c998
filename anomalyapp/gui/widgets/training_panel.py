"""The project and training form: good-image folder, detector settings, estimate, progress, log."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from anomalyapp.core.config import STAGE_WEIGHTINGS

BACKBONES = ("efficientnet_lite0", "resnet18", "resnet50", "wide_resnet50_2")


class TrainingPanel(QWidget):
    """Emits intent signals; the window's training controller does the work."""

    train_requested = Signal()
    cancel_requested = Signal()
    estimate_requested = Signal()
    region_requested = Signal()  # the person wants to draw the region of interest on a good image
    good_folder_changed = Signal(str)
    settings_changed = Signal()  # any training setting, the region included

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project_label = QLabel("No project")
        self.project_label.setObjectName("project_label")
        self.project_label.setWordWrap(True)
        font = self.project_label.font()
        font.setBold(True)
        self.project_label.setFont(font)

        self.good_folder = QLineEdit()
        self.good_folder.setObjectName("good_folder_edit")
        self.good_folder.setPlaceholderText("Folder of good images")
        self.good_folder.textChanged.connect(self.good_folder.setToolTip)  # a narrow field shows only part of it
        self.good_folder.editingFinished.connect(lambda: self.good_folder_changed.emit(self.good_folder.text()))
        browse = QPushButton("Browse…")
        browse.setObjectName("browse_good_button")
        browse.clicked.connect(self._browse)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.good_folder, 1)
        folder_row.addWidget(browse)

        self.detector = QComboBox()
        self.detector.setObjectName("detector_combo")
        # Short names that fit a narrow dock; what each one is, in the tooltips.
        self.detector.addItem("PatchCore", "patchcore")
        self.detector.setItemData(0, "PatchCore: a memory bank of good patches; learns corrections at once",
                                  Qt.ItemDataRole.ToolTipRole)
        self.detector.addItem("Autoencoder", "autoencoder")
        self.detector.setItemData(1, "Autoencoder: feature reconstruction; corrections by a short fine-tune",
                                  Qt.ItemDataRole.ToolTipRole)
        self.backbone = QComboBox()
        self.backbone.setObjectName("backbone_combo")
        for name in BACKBONES:
            self.backbone.addItem(name, name)
        self.image_size = QSpinBox()
        self.image_size.setObjectName("image_size_spin")
        self.image_size.setRange(64, 1024)
        self.image_size.setSingleStep(32)
        self.image_size.setValue(224)
        self.image_size.setSuffix(" px")
        self.image_size.setToolTip(
            "The short side of the model's input. The long side follows each image's aspect (up to 4:1), "
            "so long, thin parts are not squeezed."
        )
        self.coreset_ratio = QDoubleSpinBox()
        self.coreset_ratio.setObjectName("coreset_spin")
        self.coreset_ratio.setRange(0.001, 1.0)
        self.coreset_ratio.setDecimals(3)
        self.coreset_ratio.setSingleStep(0.01)
        self.coreset_ratio.setValue(0.1)
        self.stage_weighting = QComboBox()
        self.stage_weighting.setObjectName("stage_weighting_combo")
        self.stage_weighting.addItem("Default", "")
        for weighting in STAGE_WEIGHTINGS:
            self.stage_weighting.addItem(weighting.replace("_", " ").capitalize(), weighting)
        self.stage_weighting.setToolTip(
            "How the backbone stages weigh in the patch distance. Concatenated: as they come (the wider, coarser "
            "stages dominate). Balanced: all alike (finer maps). Score concatenated, map balanced: the image "
            "score from the first, the map from the second, one memory bank. Default: the detector's."
        )
        self.stages = QComboBox()
        self.stages.setObjectName("stages_combo")
        self.stages.addItem("Default (layer2, layer3, layer4)", "")
        self.stages.addItem("Faster (layer2, layer3)", "layer2,layer3")
        self.stages.addItem("Deeper (layer3, layer4)", "layer3,layer4")
        self.stages.setToolTip(
            "The backbone stages the patch features come from. Default: the image score led by the deepest stage, "
            "the map keeping the finest one's detail. Faster: without the deepest stage, about a third less time "
            "per image; on the shared sets the verdicts separated worse (KolektorSDD: 37 % of the defects found at "
            "the threshold instead of 65 %). Deeper: without the finest stage, coarser maps "
            "(docs/accuracy.md, which backbone stages)."
        )
        self.epochs = QSpinBox()
        self.epochs.setObjectName("epochs_spin")
        self.epochs.setRange(1, 500)
        self.epochs.setValue(40)
        self.false_reject_rate = QDoubleSpinBox()
        self.false_reject_rate.setObjectName("false_reject_rate_spin")
        self.false_reject_rate.setRange(0.01, 49.0)
        self.false_reject_rate.setDecimals(2)
        self.false_reject_rate.setSingleStep(0.5)
        self.false_reject_rate.setSuffix(" %")
        self.false_reject_rate.setValue(1.0)
        self.false_reject_rate.setToolTip(
            "The share of new good parts the threshold may judge NG. Training sets the threshold to meet it "
            "and says what it expects, with its uncertainty."
        )
        self.smallest_defect = QSpinBox()
        self.smallest_defect.setObjectName("smallest_defect_spin")
        self.smallest_defect.setRange(0, 500)
        self.smallest_defect.setSuffix(" px")
        self.smallest_defect.setSpecialValueText("not set")
        self.smallest_defect.setToolTip(
            "The smallest defect that matters, in image pixels. When squeezing the image to the image size would "
            "shrink it below about 3 pixels, the model is trained on tiles at a finer scale instead (slower)."
        )
        self.region: tuple = ()
        self.region_label = QLabel("whole image")
        self.region_label.setObjectName("region_label")
        self.region_button = QPushButton("Draw…")
        self.region_button.setObjectName("region_button")
        self.region_button.setToolTip("Draw rectangles on a good image: only they are trained on and scored. "
                                      "The part must sit in the same place in every image.")
        self.region_button.clicked.connect(self.region_requested)
        region_clear = QPushButton("Clear")
        region_clear.setObjectName("region_clear_button")
        region_clear.clicked.connect(lambda: self.set_region(()))
        region_row = QHBoxLayout()
        region_row.addWidget(self.region_label, 1)
        region_row.addWidget(self.region_button)
        region_row.addWidget(region_clear)
        self.detector.currentIndexChanged.connect(self._detector_changed)
        for combo in (self.detector, self.backbone, self.stage_weighting, self.stages):
            combo.currentIndexChanged.connect(self.settings_changed)
        for spin in (self.image_size, self.coreset_ratio, self.epochs, self.false_reject_rate, self.smallest_defect):
            spin.valueChanged.connect(self.settings_changed)
        self.good_folder_changed.connect(self.settings_changed)
        for combo in (self.detector, self.backbone):  # the dock may be narrow (1280x800): the combos shrink
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        self.detector.setToolTip("PatchCore: a memory bank of good patches, learns corrections at once. "
                                 "Autoencoder: feature reconstruction, corrections by a short fine-tune.")

        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)  # long labels go above their field
        form.addRow("Good images", folder_row)
        form.addRow("Detector", self.detector)
        form.addRow("Backbone", self.backbone)
        form.addRow("Image size (short side)", self.image_size)
        self._coreset_label = QLabel("Coreset ratio")
        form.addRow(self._coreset_label, self.coreset_ratio)
        self._stage_weighting_label = QLabel("Stage weighting")
        form.addRow(self._stage_weighting_label, self.stage_weighting)
        self._stages_label = QLabel("Feature stages")
        form.addRow(self._stages_label, self.stages)
        self._epochs_label = QLabel("Epochs")
        form.addRow(self._epochs_label, self.epochs)
        form.addRow("False rejects allowed", self.false_reject_rate)
        form.addRow("Region of interest", region_row)
        form.addRow("Smallest defect", self.smallest_defect)
        self.settings_box = QGroupBox("Training")
        self.settings_box.setObjectName("training_settings")
        self.settings_box.setLayout(form)

        self.estimate_label = QLabel("")
        self.estimate_label.setObjectName("estimate_label")
        self.estimate_label.setWordWrap(True)
        # Room for the usual two lines from the start, so that the Train button below does not move under the
        # pointer when the estimate arrives a moment after the project opens.
        self.estimate_label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.estimate_label.setMinimumHeight(2 * self.estimate_label.fontMetrics().lineSpacing())
        self.estimate_button = QPushButton("Estimate time and memory")
        self.estimate_button.setObjectName("estimate_button")
        self.estimate_button.clicked.connect(self.estimate_requested)
        self.train_button = QPushButton("Train")
        self.train_button.setObjectName("train_button")
        self.train_button.setDefault(True)
        self.train_button.clicked.connect(self.train_requested)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancel_button")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_requested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button, 1)
        buttons.addWidget(self.cancel_button)

        self.progress = QProgressBar()
        self.progress.setObjectName("training_progress")
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.eta_label = QLabel("")
        self.eta_label.setObjectName("eta_label")
        self.eta_label.setWordWrap(True)  # "past the estimate; fold 1/3: about 10 s left" may take two lines
        self.log = QPlainTextEdit()
        self.log.setObjectName("training_log")
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setPlaceholderText("Training log")

        layout = QVBoxLayout(self)
        layout.addWidget(self.project_label)
        layout.addWidget(self.settings_box)
        layout.addWidget(self.estimate_button)
        layout.addWidget(self.estimate_label)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.eta_label)
        layout.addWidget(self.log, 1)
        self._stage_started: tuple[str, float] | None = None
        self._detector_changed()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of good images", self.good_folder.text())
        if folder:
            self.good_folder.setText(folder)
            self.good_folder_changed.emit(folder)

    def _detector_changed(self) -> None:
        from anomalyapp.services.training import detector_options

        applies = detector_options(self.detector.currentData())  # the detector says which options it has
        for option, widgets in (("coreset_ratio", (self.coreset_ratio, self._coreset_label)),
                                ("stage_weighting", (self.stage_weighting, self._stage_weighting_label)),
                                ("layers", (self.stages, self._stages_label)),
                                ("epochs", (self.epochs, self._epochs_label))):
            for widget in widgets:
                widget.setVisible(option in applies)

    # ------------------------------------------------------------------------------- view updates
    def set_settings(self, settings) -> None:
        """Show a project's TrainingSettings."""
        self.detector.setCurrentIndex(max(0, self.detector.findData(settings.detector)))
        self.backbone.setCurrentIndex(max(0, self.backbone.findData(settings.backbone)))
        self.image_size.setValue(settings.image_size)
        self.coreset_ratio.setValue(settings.coreset_ratio)
        self.epochs.setValue(settings.epochs)
        self.false_reject_rate.setValue(100.0 * settings.false_reject_rate)
        self.set_region(getattr(settings, "roi", ()))
        self.smallest_defect.setValue(round(getattr(settings, "smallest_defect", 0) or 0))
        self.stage_weighting.setCurrentIndex(max(0, self.stage_weighting.findData(
            getattr(settings, "stage_weighting", ""))))
        self.stages.setCurrentIndex(max(0, self.stages.findData(getattr(settings, "stages", ""))))

    def set_region(self, rectangles) -> None:
        """The region of interest to train with (rectangles as shares of the image); () for the whole image."""
        self.region = tuple(tuple(float(v) for v in r) for r in (rectangles or ()))
        count = len(self.region)
        self.region_label.setText(f"{count} rectangle{'s' if count > 1 else ''}" if count else "whole image")
        self.settings_changed.emit()

    def settings_values(self) -> dict:
        return {
            "detector": self.detector.currentData(),
            "backbone": self.backbone.currentData(),
            "image_size": self.image_size.value(),
            "coreset_ratio": self.coreset_ratio.value(),
            "epochs": self.epochs.value(),
            "false_reject_rate": self.false_reject_rate.value() / 100.0,
            "roi": self.region,
            "smallest_defect": float(self.smallest_defect.value()),
            "stage_weighting": self.stage_weighting.currentData(),
            "stages": self.stages.currentData(),
        }

    def set_settings_editable(self, editable: bool) -> None:
        """The training settings are a supervisor's, as the training is: anyone else sees them greyed out, rather
        than a form that takes changes the project would not keep."""
        self.settings_box.setEnabled(editable)
        self.settings_box.setTitle("Training" if editable else "Training (set by a supervisor)")

    def set_running(self, running: bool) -> None:
        self.train_button.setEnabled(not running)
        self.estimate_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setRange(0, 0)
            self.progress.setFormat("starting…")
            self.eta_label.setText("")
            self._stage_started = None

    def show_progress(self, progress) -> None:
        if progress.stage == "warning":
            self.append_log(f"warning: {progress.message}")
            return
        if progress.total:
            now = time.monotonic()
            new_stage = self._stage_started is None or self._stage_started[0] != progress.stage
            if new_stage:
                self._stage_started = (progress.stage, now)
            self.progress.setRange(0, progress.total)
            self.progress.setValue(progress.step)
            self.progress.setFormat(f"{progress.stage}: {progress.step}/{progress.total}")
            # The time left is the training view-model's (TrainingViewModel.time_left -> eta_label).
            # Each stage's first step and every epoch's loss, once each (an epoch that opens a stage is both).
            if new_stage or "loss" in progress.metrics:
                self.append_log(progress.message)
        else:
            self.progress.setRange(0, 0)
            self.progress.setFormat(self._one_line(progress.message))
            self.append_log(progress.message)

    def finish(self, message: str, outcome: str = "succeeded") -> None:
        """Show how a training ended: a full bar only for a success; cancelled or failed leave it empty."""
        self.set_running(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if outcome == "succeeded" else 0)
        self.progress.setFormat(self._one_line(message))
        self.progress.setProperty("outcome", outcome)
        self.progress.setToolTip(message)
        self.eta_label.setText("")
        self.append_log(message)

    def _one_line(self, message: str) -> str:
        """What fits the one-line bar: the message's first clause, shortened to the bar's width (the whole
        message is in the log and the tooltip)."""
        first = (message.splitlines() or [""])[0].split("; ")[0]
        room = max(40, self.progress.contentsRect().width() - 12)
        return self.progress.fontMetrics().elidedText(first, Qt.TextElideMode.ElideRight, room)

    def clear(self) -> None:
        """Nothing of a previous project: no log, no progress, no estimate."""
        self.set_running(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.progress.setProperty("outcome", None)
        self.progress.setToolTip("")
        self.eta_label.setText("")
        self.estimate_label.setText("")
        self.log.clear()
        self._stage_started = None

    def append_log(self, text: str) -> None:
        self.log.appendPlainText(text)
        self.log.verticalScrollBar().setValue(self.log.verticalScrollBar().maximum())

    def set_project(self, name: str, good_folder: str | None) -> None:
        self.project_label.setText(name)
        self.good_folder.setText(good_folder or "")
        self.project_label.setAlignment(Qt.AlignmentFlag.AlignLeft)
