"""Turning images and anomaly maps into pictures people look at: 8-bit display images and overlays."""

from __future__ import annotations

import cv2
import numpy as np

from anomalyapp.core.colours import ANOMALY_COLOUR_MAP, heat_alpha
from anomalyapp.core.verdicts import NORMALISED_THRESHOLD

# Overlays are drawn at the image's own size up to this many pixels (an 8000 x 6000 camera fits), and shrunk to
# it beyond: the picture then takes at most ~150 MB whatever the image, a 400-megapixel one included.
OVERLAY_BUDGET_PIXELS = 50_000_000
# Blending works on bands of rows of about this many pixels, so its float32 temporaries stay about 12 MB.
_BAND_PIXELS = 1 << 18


def display_rgb(pixels: np.ndarray) -> np.ndarray:
    """Any stored image (gray or RGB; 8-bit, 16-bit or float) -> HxWx3 uint8 for display.

    16-bit and float images are stretched between their 0.5th and 99.5th percentiles: industrial 16-bit
    sensors rarely fill the range, and a plain shift by 8 bits shows them black.
    """
    if pixels.dtype != np.uint8:
        low, high = np.percentile(pixels[:: max(1, pixels.shape[0] // 256)].astype(np.float32), (0.5, 99.5))
        scale = np.float32(255.0 / max(float(high - low), 1e-6))
        if pixels.dtype == np.uint16:  # one table of 65536 entries instead of a float copy of the image
            table = np.clip((np.arange(65536, dtype=np.float32) - np.float32(low)) * scale, 0, 255).astype(np.uint8)
            pixels = table[pixels]
        else:
            stretched = np.empty(pixels.shape, np.uint8)
            for rows in _bands(pixels.shape):
                values = pixels[rows].astype(np.float32)
                stretched[rows] = np.clip((values - np.float32(low)) * scale, 0, 255).astype(np.uint8)
            pixels = stretched
    return np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels


# core names the map; OpenCV has a constant of the same name (pyqtgraph, in the viewer, takes the name itself).
_OPENCV_COLOUR_MAP = getattr(cv2, f"COLORMAP_{ANOMALY_COLOUR_MAP.upper()}")


def heat_colours(normalised_map: np.ndarray) -> np.ndarray:
    """Normalised map (threshold at 0.5) -> RGB uint8 with a fixed scale: 0 -> dark blue, >= 1 -> dark red."""
    levels = (np.clip(normalised_map, 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.applyColorMap(levels, _OPENCV_COLOUR_MAP)[:, :, ::-1]


def regions_above(normalised_map: np.ndarray, level: float = NORMALISED_THRESHOLD) -> list[np.ndarray]:
    """Outlines (OpenCV contours) of the regions at or above ``level``."""
    mask = (normalised_map >= level).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return list(contours)


def overlay_shape(height: int, width: int, budget: int = OVERLAY_BUDGET_PIXELS) -> tuple[int, int]:
    """The (height, width) an overlay of an image this size is drawn at: its own, or shrunk to ``budget`` pixels."""
    if height * width <= budget:
        return height, width
    factor = (budget / (height * width)) ** 0.5
    return max(1, int(height * factor)), max(1, int(width * factor))


def overlay(pixels: np.ndarray, normalised_map: np.ndarray, opacity: float = 0.5, outline: bool = True,
            budget: int = OVERLAY_BUDGET_PIXELS) -> np.ndarray:
    """The image with the heat map blended on top (pixels below the threshold fade with their score: ``heat_alpha``).

    Drawn at the image's size up to ``budget`` pixels, shrunk beyond; memory beyond the picture itself stays
    about 12 MB, because blending runs band by band.
    """
    height, width = overlay_shape(*pixels.shape[:2], budget)
    if (height, width) != pixels.shape[:2]:
        pixels = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
    base = display_rgb(pixels)
    heat_map = normalised_map
    if heat_map.shape[:2] != base.shape[:2]:
        shrinking = heat_map.shape[0] * heat_map.shape[1] > height * width
        heat_map = cv2.resize(heat_map, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    blended = np.empty((height, width, 3), np.uint8)
    for rows in _bands(blended.shape):
        band_map = heat_map[rows]
        heat = heat_colours(band_map).astype(np.float32)
        alpha = (opacity * heat_alpha(band_map))[:, :, None]
        blended[rows] = (base[rows].astype(np.float32) * (1 - alpha) + heat * alpha).astype(np.uint8)
    if outline:
        thickness = max(1, round(max(base.shape[:2]) / 400))
        cv2.drawContours(blended, regions_above(heat_map), -1, (255, 255, 255), thickness)
    return blended


def _bands(shape: tuple[int, ...]):
    """Row slices covering an image of ``shape`` in bands of about ``_BAND_PIXELS`` pixels."""
    step = max(1, _BAND_PIXELS // max(1, shape[1]))
    return [slice(start, start + step) for start in range(0, shape[0], step)]


def mask_png(mask: np.ndarray) -> bytes | None:
    """A painted region (boolean or 0/1 mask) as a PNG for the records: white where painted."""
    ok, encoded = cv2.imencode(".png", mask.astype("uint8") * 255)
    return encoded.tobytes() if ok else None
