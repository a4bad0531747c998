"""Patch scores -> an anomaly map at the image's own resolution."""

from __future__ import annotations

import cv2
import numpy as np

# A map bigger than this on its long side is kept at this size: an 8000x6000 float map would cost 190 MB
# per image while the model only resolves 1/8 of its input size anyway.
MAX_MAP_SIDE = 4096


def gaussian_smooth(patch_map: np.ndarray, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Upsample a patch grid to the model's input (height, width) and blur it (Roth et al.: sigma 4 there)."""
    upsampled = cv2.resize(patch_map.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    if sigma > 0:
        radius = int(4 * sigma + 0.5)
        upsampled = cv2.GaussianBlur(upsampled, (2 * radius + 1, 2 * radius + 1), sigma, borderType=cv2.BORDER_REFLECT)
    return upsampled


def to_image_size(model_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a model-resolution map to the image's size (capped at MAX_MAP_SIDE on the long side)."""
    scale = min(1.0, MAX_MAP_SIDE / max(height, width))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    if target == (model_map.shape[1], model_map.shape[0]):
        return model_map
    return cv2.resize(model_map, target, interpolation=cv2.INTER_LINEAR)
