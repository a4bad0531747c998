"""Turning images and anomaly maps into pictures people look at: 8-bit display images and overlays."""

from __future__ import annotations

import cv2
import numpy as np


def display_rgb(pixels: np.ndarray) -> np.ndarray:
    """Any stored image (gray or RGB; 8-bit, 16-bit or float) -> HxWx3 uint8 for display.

    16-bit and float images are stretched between their 0.5th and 99.5th percentiles: industrial 16-bit
    sensors rarely fill the range, and a plain shift by 8 bits shows them black.
    """
    if pixels.dtype != np.uint8:
        values = pixels.astype(np.float32)
        low, high = np.percentile(values[:: max(1, values.shape[0] // 256)], (0.5, 99.5))
        scale = 255.0 / max(float(high - low), 1e-6)
        pixels = np.clip((values - low) * scale, 0, 255).astype(np.uint8)
    return np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels


def heat_colours(normalised_map: np.ndarray) -> np.ndarray:
    """Normalised map (threshold at 0.5) -> RGB uint8 with a fixed scale: 0 -> dark blue, >= 1 -> dark red."""
    levels = (np.clip(normalised_map, 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.applyColorMap(levels, cv2.COLORMAP_TURBO)[:, :, ::-1]


def regions_above(normalised_map: np.ndarray, level: float = 0.5) -> list[np.ndarray]:
    """Outlines (OpenCV contours) of the regions at or above ``level``."""
    mask = (normalised_map >= level).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return list(contours)


def overlay(pixels: np.ndarray, normalised_map: np.ndarray, opacity: float = 0.5, outline: bool = True) -> np.ndarray:
    """The image with the heat map blended on top (pixels below the threshold fade with their score)."""
    base = display_rgb(pixels)
    heat_map = normalised_map
    if heat_map.shape[:2] != base.shape[:2]:
        heat_map = cv2.resize(heat_map, (base.shape[1], base.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat = heat_colours(heat_map).astype(np.float32)
    # Weight by evidence so good regions keep their true look and the eye goes to what crossed the line.
    alpha = (opacity * np.clip(heat_map / 0.5, 0.15, 1.0))[:, :, None]
    blended = (base.astype(np.float32) * (1 - alpha) + heat * alpha).astype(np.uint8)
    if outline:
        thickness = max(1, round(max(base.shape[:2]) / 400))
        cv2.drawContours(blended, regions_above(heat_map), -1, (255, 255, 255), thickness)
    return blended
