"""The typed application settings file: ``<config dir>/settings.json``, read leniently, written atomically."""

from __future__ import annotations

import json
from dataclasses import replace

from anomalyapp.core import paths
from anomalyapp.core.config import AppConfig
from anomalyapp.core.files import write_text_atomically


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
    limit = config.max_megapixels
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0):
        config = replace(config, max_megapixels=None)
    return config


def apply_pixel_limit(megapixels: float | None) -> None:
    """The largest image this process decodes, in megapixels (``--max-pixels``, or ``max_megapixels`` of the
    settings file); None: the ANOMALYAPP_MAX_PIXELS variable, else the default of 100."""
    from anomalyapp.data.images import set_pixel_limit

    set_pixel_limit(megapixels)


def save_settings(config: AppConfig) -> None:
    write_text_atomically(settings_file(), json.dumps(config.to_dict(), indent=2))
