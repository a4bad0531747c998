import io
import os

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from anomalyapp.core.errors import DataError, ImageReadError
from anomalyapp.data.images import IMAGE_SUFFIXES, LoadedImage, iter_loaded, list_images, load_image, save_image

RNG = np.random.default_rng(7)


def random_pixels(dtype, channels, height=12, width=17):
    shape = (height, width) if channels == 1 else (height, width, channels)
    return RNG.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


def with_orientation(array, pil_format, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, pil_format, exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff", ".PNG"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3])
def test_lossless_round_trip_keeps_pixels_dtype_and_channels(tmp_path, suffix, dtype, channels):
    pixels = random_pixels(dtype, channels)
    path = tmp_path / f"part{suffix}"
    save_image(path, pixels)
    loaded = load_image(path)
    assert loaded.pixels.dtype == dtype and np.array_equal(loaded.pixels, pixels)
    assert (loaded.height, loaded.width) == (12, 17)
    assert loaded.is_gray == (channels == 1)
    assert loaded.bit_depth == np.dtype(dtype).itemsize * 8
    assert loaded.path == str(path)
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left behind


def test_float_tiff_is_float32_and_to_rgb_float_clips(tmp_path):
    pixels = np.linspace(-0.5, 1.5, 12 * 17, dtype=np.float32).reshape(12, 17)
    save_image(tmp_path / "depth.tif", pixels)
    loaded = load_image(tmp_path / "depth.tif")
    assert loaded.pixels.dtype == np.float32 and loaded.bit_depth == 32
    assert np.array_equal(loaded.pixels, pixels)
    rgb = loaded.to_rgb_float()
    assert rgb.shape == (12, 17, 3) and rgb.min() == 0.0 and rgb.max() == 1.0


@pytest.mark.parametrize(("dtype", "full_scale"), [(np.uint8, 255), (np.uint16, 65535)])
def test_to_rgb_float_scales_to_unit_range_and_repeats_gray(dtype, full_scale):
    gray = np.array([[0, full_scale]], dtype)
    rgb = LoadedImage("x.png", gray).to_rgb_float()
    assert rgb.dtype == np.float32 and rgb.shape == (1, 2, 3)
    assert np.array_equal(rgb[0, :, 0], [0.0, 1.0]) and np.array_equal(rgb[..., 0], rgb[..., 2])


def test_colour_order_is_rgb_against_pillow(tmp_path):
    pixels = random_pixels(np.uint8, 3)
    Image.fromarray(pixels).save(tmp_path / "pillow.png")
    assert np.array_equal(load_image(tmp_path / "pillow.png").pixels, pixels)
    save_image(tmp_path / "ours.png", pixels)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "ours.png")), pixels)


def test_alpha_is_dropped(tmp_path):
    rgba = random_pixels(np.uint8, 4)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgba[:, :, [0, 3]], "LA").save(tmp_path / "gray_alpha.png")
    assert np.array_equal(load_image(tmp_path / "rgba.png").pixels, rgba[:, :, :3])
    assert np.array_equal(load_image(tmp_path / "gray_alpha.png").pixels, rgba[:, :, 0])


@pytest.mark.parametrize("name", ["part.jpg", "part.jpeg", "PART.JPG"])
def test_jpeg_round_trip_is_close_and_rgb(tmp_path, name):
    pixels = np.zeros((32, 48, 3), np.uint8)
    pixels[:, :24] = (220, 30, 30)  # red left half tells R from B after a lossy round trip
    pixels[:, 24:] = (30, 30, 220)
    save_image(tmp_path / name, pixels)
    loaded = load_image(tmp_path / name)
    assert loaded.pixels.shape == pixels.shape and loaded.pixels.dtype == np.uint8
    assert np.abs(loaded.pixels.astype(int) - pixels).mean() < 4


def test_bmp_round_trip(tmp_path):
    pixels = random_pixels(np.uint8, 3)
    save_image(tmp_path / "part.bmp", pixels)
    assert np.array_equal(load_image(tmp_path / "part.bmp").pixels, pixels)


def test_unicode_file_name(tmp_path):
    path = tmp_path / "prüfteil_检查.png"
    pixels = random_pixels(np.uint8, 3)
    save_image(path, pixels)
    assert np.array_equal(load_image(path).pixels, pixels)
    assert list_images(tmp_path) == [path]


def test_jpeg_exif_orientation_6_is_rotated_clockwise(tmp_path):
    pixels = np.full((20, 40, 3), 40, np.uint8)
    pixels[:8, :8] = 250  # bright corner, top left as stored
    (tmp_path / "phone.jpg").write_bytes(with_orientation(pixels, "JPEG", 6))
    upright = load_image(tmp_path / "phone.jpg").pixels
    assert upright.shape == (40, 20, 3)
    assert upright[:6, -6:].mean() > 200 and upright[-6:, :6].mean() < 100  # now at top right


@pytest.mark.parametrize(("pil_format", "suffix"), [("PNG", ".png"), ("TIFF", ".tif")])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow(tmp_path, pil_format, suffix, orientation):
    data = with_orientation(random_pixels(np.uint8, 3, height=5, width=9), pil_format, orientation)
    path = tmp_path / f"oriented{suffix}"
    path.write_bytes(data)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    assert np.array_equal(load_image(path).pixels, expected)


def assert_read_error(path, reason_part):
    with pytest.raises(ImageReadError) as caught:
        load_image(path)
    assert caught.value.path == str(path)
    assert reason_part in caught.value.reason
    assert str(path) in str(caught.value)


def test_corrupt_file(tmp_path):
    (tmp_path / "noise.png").write_bytes(np.random.default_rng(0).bytes(500))
    assert_read_error(tmp_path / "noise.png", "not a decodable image")


def test_truncated_png(tmp_path):
    save_image(tmp_path / "whole.png", random_pixels(np.uint8, 3, 64, 64))
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:60])
    assert_read_error(tmp_path / "cut.png", "not a decodable image")


def test_text_named_jpg(tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    assert_read_error(tmp_path / "notes.jpg", "not a decodable image")


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").touch()
    assert_read_error(tmp_path / "empty.png", "empty file")


def test_missing_file(tmp_path):
    assert_read_error(tmp_path / "gone.png", "file not found")


def test_folder_passed_as_file(tmp_path):
    (tmp_path / "looks_like.png").mkdir()
    assert_read_error(tmp_path / "looks_like.png", "is a folder")


def test_unsupported_pixel_type(tmp_path):
    ok, encoded = cv2.imencode(".tif", np.full((4, 5), 70000, np.int32))
    assert ok
    (tmp_path / "signed.tif").write_bytes(encoded.tobytes())
    assert_read_error(tmp_path / "signed.tif", "unsupported pixel type int32")


def test_save_refuses_what_the_format_cannot_hold(tmp_path):
    with pytest.raises(DataError, match="unsupported type"):
        save_image(tmp_path / "part.gif", random_pixels(np.uint8, 3))
    with pytest.raises(DataError, match="cannot hold uint16"):
        save_image(tmp_path / "part.jpg", random_pixels(np.uint16, 1))
    with pytest.raises(DataError, match="does not exist"):
        save_image(tmp_path / "missing" / "part.png", random_pixels(np.uint8, 1))
    with pytest.raises(ValueError):
        save_image(tmp_path / "part.png", np.zeros((4, 5, 2), np.uint8))
    assert os.listdir(tmp_path) == []


def test_save_writes_bool_as_0_and_255(tmp_path):
    mask = np.zeros((6, 7), bool)
    mask[2:4, 3:5] = True
    save_image(tmp_path / "mask.png", mask)
    assert np.array_equal(load_image(tmp_path / "mask.png").pixels, mask.astype(np.uint8) * 255)


def test_save_replaces_an_existing_file(tmp_path):
    save_image(tmp_path / "part.png", np.zeros((4, 4), np.uint8))
    save_image(tmp_path / "part.png", np.full((4, 4), 9, np.uint8))
    assert load_image(tmp_path / "part.png").pixels.max() == 9


def test_list_images_is_sorted_flat_and_case_insensitive(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.Tiff", "d.bmp", "e.jpeg", "f.tif"]:
        (tmp_path / name).touch()
    for name in ["notes.txt", ".hidden.png", "._a.jpg"]:
        (tmp_path / name).touch()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.png").touch()
    (tmp_path / "folder.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.Tiff", "d.bmp", "e.jpeg", "f.tif"]
    assert set(IMAGE_SUFFIXES) == {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def test_list_images_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist") as caught:
        list_images(tmp_path / "missing")
    assert str(tmp_path / "missing") in str(caught.value)
    (tmp_path / "file.png").touch()
    with pytest.raises(DataError, match="is not a folder"):
        list_images(tmp_path / "file.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").touch()
    with pytest.raises(DataError, match=r"no images \(png, jpg, bmp, tif\) in .*empty"):
        list_images(tmp_path / "empty")


def test_iter_loaded_yields_errors_and_carries_on(tmp_path):
    save_image(tmp_path / "a.png", random_pixels(np.uint8, 3))
    (tmp_path / "b.png").write_bytes(b"\x89PNG garbage")
    save_image(tmp_path / "c.png", random_pixels(np.uint8, 1))
    results = list(iter_loaded(list_images(tmp_path)))
    assert [type(r) for r in results] == [LoadedImage, ImageReadError, LoadedImage]
    assert results[1].path == str(tmp_path / "b.png")


def test_transparent_gray_png_stays_gray(tmp_path):
    gray = random_pixels(np.uint8, 1)
    Image.fromarray(gray, "L").save(tmp_path / "gray_trns.png", transparency=0)
    assert np.array_equal(load_image(tmp_path / "gray_trns.png").pixels, gray)
