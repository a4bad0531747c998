"""Preferences: edits an AppConfig and returns a new one; never writes files itself."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QSpinBox

from anomalyapp.core.config import AppConfig


class SettingsDialog(QDialog):
    def __init__(self, config: AppConfig, cuda_available: bool, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.setObjectName("settings_dialog")
        self._config = config
        self.device = QComboBox()
        self.device.setObjectName("settings_device")
        self.device.addItem("Automatic (GPU when present)", "auto")
        self.device.addItem("CPU", "cpu")
        if cuda_available:
            self.device.addItem("CUDA GPU", "cuda")
        self.device.setCurrentIndex(max(0, self.device.findData(config.device)))
        # Percent, as the viewer's opacity slider shows it (the config keeps a 0..1 fraction).
        self.opacity = QSpinBox()
        self.opacity.setObjectName("settings_opacity")
        self.opacity.setRange(0, 100)
        self.opacity.setSingleStep(5)
        self.opacity.setSuffix(" %")
        self.opacity.setValue(round(config.overlay_opacity * 100))
        self.outlines = QCheckBox("Outline regions above the threshold")
        self.outlines.setChecked(config.show_outlines)
        self.reopen = QCheckBox("Reopen the last project at start")
        self.reopen.setChecked(config.reopen_last_project)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Device for training and inspection", self.device)
        form.addRow("Heat-map opacity", self.opacity)
        form.addRow("", self.outlines)
        form.addRow("", self.reopen)
        form.addRow(buttons)

    def config(self) -> AppConfig:
        return replace(
            self._config,
            device=self.device.currentData(),
            overlay_opacity=self.opacity.value() / 100.0,
            show_outlines=self.outlines.isChecked(),
            reopen_last_project=self.reopen.isChecked(),
        )
