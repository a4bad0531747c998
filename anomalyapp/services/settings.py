"""The typed application settings file: ``<config dir>/settings.json``, read leniently, written atomically."""

from __future__ import annotations

import json
import os
from dataclasses import replace

from anomalyapp.core import paths
from anomalyapp.core.config import AppConfig
from anomalyapp.core.errors import AppError


def settings_file():
    return paths.config_dir() / "settings.json"


def load_settings() -> AppConfig:
    """The saved settings; a missing or unreadable file gives the defaults (a bad file must not stop the app)."""
    try:
        data = json.loads(settings_file().read_text(encoding="utf-8"))
        config = AppConfig.from_dict(data)
    except (OSError, ValueError, TypeError):
        return AppConfig()
    if config.device not in ("auto", "cpu", "cuda"):
        config = replace(config, device="auto")
    return config


def save_settings(config: AppConfig) -> None:
    target = settings_file()
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        raise AppError(f"cannot save settings to {target}: {exc.strerror or exc}") from None
