"""The window's cache of shown images is bounded by memory, not only by a count."""

from __future__ import annotations

import numpy as np

from anomalyapp.gui.controllers import CACHE_BUDGET_BYTES, CACHE_SIZE, InspectionController


def test_huge_images_do_not_fill_the_cache(qapp):
    controller = InspectionController()
    side = 12000  # 144 megapixels: 432 MB of RGB and 576 MB of map (np.zeros does not touch the pages)
    for index in range(5):
        controller._remember(f"big_{index}.png", np.zeros((side, side, 3), np.uint8), np.zeros((side, side), np.float32))
        assert controller.cache_bytes() <= max(CACHE_BUDGET_BYTES, side * side * 7)
    assert list(controller._cache) == ["big_4.png"]  # the image on screen is always kept
    for index in range(CACHE_SIZE + 5):
        controller._remember(f"small_{index}.png", np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.float32))
    assert len(controller._cache) == CACHE_SIZE
