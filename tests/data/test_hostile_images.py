"""Hostile and unlucky image files: decompression bombs, tiny images, formula-like names in CSV cells."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from anomalyapp.core.csv_cells import csv_text, safe_cell
from anomalyapp.core.errors import DataError, ImageReadError
from anomalyapp.data.images import load_image, load_training_image, save_image, set_pixel_limit
from anomalyapp.services import rendering
from anomalyapp.services.training import choose_keep_aspect


@pytest.fixture(autouse=True)
def default_pixel_limit(monkeypatch):
    monkeypatch.delenv("ANOMALYAPP_MAX_PIXELS", raising=False)
    set_pixel_limit(None)
    yield
    set_pixel_limit(None)


def _png_bomb(path: Path, width: int, height: int) -> Path:
    """A real gray PNG of width x height zero pixels: a few hundred KB on disk, width * height bytes decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    bomb = _png_bomb(tmp_path / "bomb.png", 12000, 10000)  # 120 megapixels in about 120 KB
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(ImageReadError) as caught:
        load_image(bomb)
    assert str(caught.value) == (
        f"cannot read image {bomb}: 120 megapixels (12000x10000) is above the limit of 100 "
        "(set --max-pixels or ANOMALYAPP_MAX_PIXELS to raise it)"
    )


def test_the_pixel_limit_is_set_by_the_process_or_the_environment(tmp_path, monkeypatch):
    image = tmp_path / "part.png"
    save_image(image, np.full((64, 80), 7, np.uint8))  # 5120 pixels
    set_pixel_limit(0.005)
    with pytest.raises(ImageReadError, match=r"0\.00512 megapixels \(80x64\) is above the limit of 0\.005 "):
        load_image(image)
    set_pixel_limit(None)
    monkeypatch.setenv("ANOMALYAPP_MAX_PIXELS", "0.004")
    with pytest.raises(ImageReadError, match="80x64"):
        load_image(image)
    monkeypatch.setenv("ANOMALYAPP_MAX_PIXELS", "0.006")
    assert load_image(image).pixels.shape == (64, 80)
    monkeypatch.setenv("ANOMALYAPP_MAX_PIXELS", "lots")
    with pytest.raises(DataError, match="ANOMALYAPP_MAX_PIXELS='lots' is not a number"):
        load_image(image)


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".tif"])
def test_the_limit_reads_every_supported_format_header(tmp_path, suffix):
    image = tmp_path / f"part{suffix}"
    save_image(image, np.full((40, 50, 3), 90, np.uint8))
    set_pixel_limit(0.0019)
    with pytest.raises(ImageReadError, match=r"\(50x40\) is above the limit"):
        load_image(image)
    set_pixel_limit(0.0021)
    assert load_image(image).pixels.shape == (40, 50, 3)


def test_tiny_images_are_refused_for_training_with_the_minimum_named(tmp_path):
    for name, shape in (("dot.png", (1, 1)), ("sliver.png", (700, 3))):
        save_image(tmp_path / name, np.zeros(shape, np.uint8))
        assert load_image(tmp_path / name).pixels.shape == shape  # predict still scores it
        with pytest.raises(ImageReadError, match="too small to train on.*at least 32 px"):
            load_training_image(tmp_path / name)


def test_a_sliver_no_longer_flips_the_aspect_choice(tmp_path):
    paths = []
    for index in range(4):
        paths.append(tmp_path / f"good_{index}.png")
        save_image(paths[-1], np.full((100, 250), 120, np.uint8))
    assert choose_keep_aspect(paths)
    save_image(tmp_path / "sliver.png", np.zeros((700, 3), np.uint8))
    assert choose_keep_aspect(paths + [tmp_path / "sliver.png"])


def test_every_formula_start_is_guarded_and_numbers_are_not():
    for text in ("=HYPERLINK(\"http://x\")+1.png", "+A1", "-cmd", "@SUM(A1)", "\tx", "\rx"):
        assert safe_cell(text) == "'" + text
    for value in ("-0.25", "-1e-05", "0.5", "part.png", "", 3, -2.5, None):
        assert safe_cell(value) == ("" if value is None else str(value))
    assert csv_text(["=a", "b"], [["-1", "=1+1"]]) == "'=a,b\n-1,'=1+1\n"


def _traced_peak(function) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_overlay_over_its_budget_is_shrunk_and_blends_in_bands():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (1500, 2000, 3), dtype=np.uint8)
    normalised_map = np.zeros((1500, 2000), np.float32)
    normalised_map[600:900, 800:1200] = 1.0
    picture = rendering.overlay(pixels, normalised_map, budget=750_000)
    assert picture.dtype == np.uint8 and picture.shape == (750, 1000, 3)
    # The old overlay made float32 copies at full size, about 17 times the image; now the picture and a few MB.
    peak = _traced_peak(lambda: rendering.overlay(pixels, normalised_map))
    assert peak < 3 * pixels.nbytes, peak / pixels.nbytes


def test_a_banded_overlay_matches_the_plain_formula():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 65535, (300, 401), dtype=np.uint16)
    normalised_map = rng.random((75, 100)).astype(np.float32) * 1.2
    picture = rendering.overlay(pixels, normalised_map, outline=False)
    # The whole-image formula the overlay had before it worked in bands.
    import cv2

    values = pixels.astype(np.float32)
    low, high = np.percentile(values[:: max(1, values.shape[0] // 256)], (0.5, 99.5))
    base = np.clip((values - low) * (255.0 / max(float(high - low), 1e-6)), 0, 255).astype(np.uint8)
    base = np.repeat(base[:, :, None], 3, axis=2).astype(np.float32)
    heat_map = cv2.resize(normalised_map, (401, 300), interpolation=cv2.INTER_LINEAR)
    heat = rendering.heat_colours(heat_map).astype(np.float32)
    # The screen's rule (core.colours.heat_alpha): nothing below a quarter of the threshold, full at it.
    alpha = (0.5 * np.clip((heat_map - 0.125) / (0.5 - 0.125), 0.0, 1.0))[:, :, None]
    expected = (base * (1 - alpha) + heat * alpha).astype(np.uint8)
    assert np.abs(picture.astype(int) - expected.astype(int)).max() <= 1
