"""Where the application keeps its files, and where bundled resources live.

Three cases are covered: a source checkout, an installed wheel, and a PyInstaller build (``sys.frozen``,
resources under ``sys._MEIPASS`` and a ``models/`` folder beside the executable).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP_NAME = "anomalyapp"
APP_AUTHOR = "anomalyapp"


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def data_dir() -> Path:
    """Per-user data folder; ``ANOMALYAPP_DATA_DIR`` overrides it (tests, portable installs)."""
    override = os.environ.get("ANOMALYAPP_DATA_DIR")
    if override:
        return Path(override)
    return Path(platformdirs.user_data_dir(APP_NAME, APP_AUTHOR))


def config_dir() -> Path:
    override = os.environ.get("ANOMALYAPP_CONFIG_DIR")
    if override:
        return Path(override)
    return Path(platformdirs.user_config_dir(APP_NAME, APP_AUTHOR))


def log_dir() -> Path:
    """Per-user log folder; ``ANOMALYAPP_LOG_DIR`` overrides it (tests, portable installs)."""
    override = os.environ.get("ANOMALYAPP_LOG_DIR")
    if override:
        return Path(override)
    return Path(platformdirs.user_log_dir(APP_NAME, APP_AUTHOR))


def models_dirs() -> list[Path]:
    """Folders searched for backbone weight files, in order of preference."""
    folders = [data_dir() / "models"]
    if is_frozen():
        folders.append(Path(sys.executable).resolve().parent / "models")
        folders.append(Path(getattr(sys, "_MEIPASS", "")) / "models")
    return folders


def resources_dir() -> Path:
    """The ``resources/`` folder of a checkout, or its copy inside a packaged build or wheel."""
    if is_frozen():
        return Path(sys._MEIPASS) / "resources"
    packaged = Path(__file__).resolve().parent.parent / "resources"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "resources"
