"""Reading and writing image files.

This is the one place where OpenCV's BGR order becomes RGB and where pixel types are checked: everything
above this module sees ``LoadedImage.pixels`` in RGB (or gray) with dtype uint8, uint16 or float32.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import BmpImagePlugin, Image, JpegImagePlugin, PngImagePlugin, TiffImagePlugin

from anomalyapp.core.config import DEFAULT_MAX_MEGAPIXELS, MIN_TRAINING_SIDE
from anomalyapp.core.errors import DataError, ImageReadError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

_UNDECODABLE = "not a decodable image (corrupt or unsupported format)"
_ORIENTATION_TAG = 0x0112
# Pillow's name for each format whose files may carry an orientation tag (MPO is a multi-frame JPEG).
_ORIENTED_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "TIFF": "TIFF"}
_WRITABLE_DTYPES = {
    ".png": (np.uint8, np.uint16),
    ".jpg": (np.uint8,),
    ".jpeg": (np.uint8,),
    ".bmp": (np.uint8,),
    ".tif": (np.uint8, np.uint16, np.float32),
    ".tiff": (np.uint8, np.uint16, np.float32),
}
_FULL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
# Pillow's readers parse a file's header without decoding its pixels. They are called directly rather than
# through Image.open, whose own decompression-bomb check would refuse a large file before we learn its size.
# OpenCV cannot tell a size without decoding (IMREAD_REDUCED_* still inflates the whole PNG).
_HEADER_READERS = (
    (b"\x89PNG\r\n\x1a\n", PngImagePlugin.PngImageFile),
    (b"\xff\xd8\xff", JpegImagePlugin.JpegImageFile),
    (b"BM", BmpImagePlugin.BmpImageFile),
    (b"II*\x00", TiffImagePlugin.TiffImageFile),
    (b"MM\x00*", TiffImagePlugin.TiffImageFile),
    (b"II+\x00", TiffImagePlugin.TiffImageFile),
    (b"MM\x00+", TiffImagePlugin.TiffImageFile),
)
PIXEL_LIMIT_VARIABLE = "ANOMALYAPP_MAX_PIXELS"
_pixel_limit: float | None = None  # megapixels set for this process (CLI flag, settings); None: variable or default


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether the name has an image suffix (any case) and is not a hidden or temporary file."""
    name = Path(path).name
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """Pixels as stored (uint8, uint16 or float32), HxW gray or HxWx3 RGB, upright per the file's orientation."""

    path: str
    pixels: np.ndarray

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def is_gray(self) -> bool:
        return self.pixels.ndim == 2

    @property
    def bit_depth(self) -> int:
        return self.pixels.dtype.itemsize * 8

    def to_rgb(self) -> np.ndarray:
        """HxWx3 in the stored type (what the detectors take); gray is repeated into three channels.

        Float pixels are clipped to [0, 1]; integer ones keep their range, so 16-bit detail survives
        until the model's own resize.
        """
        pixels = self.pixels
        if pixels.dtype == np.float32:
            pixels = np.clip(np.nan_to_num(pixels), 0.0, 1.0)
        return np.repeat(pixels[:, :, None], 3, axis=2) if self.is_gray else pixels

    def to_rgb_float(self) -> np.ndarray:
        """HxWx3 float32 in [0, 1]; gray is repeated into three channels."""
        scale = _FULL_SCALE.get(self.pixels.dtype)
        rgb = self.pixels.astype(np.float32)
        rgb = rgb / np.float32(scale) if scale else np.clip(np.nan_to_num(rgb), 0.0, 1.0)
        return np.repeat(rgb[:, :, None], 3, axis=2) if self.is_gray else rgb


def set_pixel_limit(megapixels: float | None) -> None:
    """Set the largest image this process decodes, in megapixels; None goes back to the variable or default.

    A process-wide knob, set once by the front end (``--max-pixels``, the settings file).
    """
    global _pixel_limit
    if megapixels is not None and not megapixels > 0:
        raise DataError(f"the pixel limit must be above 0 megapixels, not {megapixels}")
    _pixel_limit = megapixels


def pixel_limit() -> float:
    """The largest image decoded, in megapixels: as set, else ``ANOMALYAPP_MAX_PIXELS``, else the default."""
    if _pixel_limit is not None:
        return _pixel_limit
    text = os.environ.get(PIXEL_LIMIT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_MEGAPIXELS
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise DataError(f"{PIXEL_LIMIT_VARIABLE}={text!r} is not a number of megapixels above 0")
    return value


def load_image(path: str | os.PathLike) -> LoadedImage:
    """Read one image file; every failure is an ``ImageReadError`` that names the file and the reason.

    A file whose header claims more than ``pixel_limit()`` megapixels is refused before it is decoded.
    """
    data = _read_bytes(path)
    _check_pixel_count(path, _header_size(data))
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        decoded = None
    if decoded is None or decoded.size == 0:
        raise ImageReadError(path, _UNDECODABLE)
    if decoded.ndim == 3 and _is_gray_png(data):
        decoded = decoded[:, :, 0]  # OpenCV expands gray plus alpha (or a transparent gray) to BGRA
    pixels = _apply_orientation(_to_rgb_or_gray(decoded, path), _orientation_to_apply(data))
    return LoadedImage(str(path), np.ascontiguousarray(pixels))


def load_training_image(path: str | os.PathLike) -> LoadedImage:
    """``load_image`` for training: also refuses an image with a side under ``MIN_TRAINING_SIDE`` pixels."""
    image = load_image(path)
    if min(image.height, image.width) < MIN_TRAINING_SIDE:
        raise ImageReadError(
            path, f"{image.width}x{image.height} pixels is too small to train on (each side needs at least "
                  f"{MIN_TRAINING_SIDE} px)"
        )
    return image


def save_image(path: str | os.PathLike, pixels: np.ndarray) -> None:
    """Write gray, RGB or RGBA pixels; the suffix picks the format. A reader never sees a half-written file."""
    save_encoded_image(path, encode_image(path, pixels))


def save_encoded_image(path: str | os.PathLike, data: bytes) -> None:
    """Write the bytes ``encode_image`` made (elsewhere: a cluster worker), as ``save_image`` would."""
    _write_atomically(Path(path), data)


def encode_image(path: str | os.PathLike, pixels: np.ndarray) -> bytes:
    """The bytes ``save_image`` writes to ``path`` (its suffix picks the format); nothing is written."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in _WRITABLE_DTYPES:
        raise DataError(f"cannot write image {target}: unsupported type '{target.suffix}' (use png, jpg, bmp or tif)")
    array = np.asarray(pixels)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype not in _WRITABLE_DTYPES[suffix]:
        raise DataError(f"cannot write image {target}: {suffix[1:]} files cannot hold {array.dtype} pixels")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] in (3, 4):
        array = array[:, :, [2, 1, 0, 3][: array.shape[2]]]
    elif array.ndim != 2:
        raise ValueError(f"expected HxW, HxWx3 or HxWx4 pixels, got shape {array.shape}")
    try:
        ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(array))
    except cv2.error:
        ok = False
    if not ok:
        raise DataError(f"cannot write image {target}: the {suffix[1:]} encoder refused {array.dtype} {array.shape}")
    return encoded.tobytes()


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name; a folder without any is an error."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    images = images_in(folder)
    if not images:
        raise DataError(f"no images (png, jpg, bmp, tif) in {folder}")
    return images


def images_in(folder: Path) -> list[Path]:
    """Like ``list_images`` but an empty list instead of an error; the folder must exist."""
    try:
        return sorted((p for p in folder.iterdir() if is_image_file(p) and p.is_file()), key=lambda p: p.name)
    except OSError as error:
        raise DataError(f"cannot list the images in {folder}: {error.strerror or error}") from None


def iter_loaded(paths: Iterable[str | os.PathLike]) -> Iterator[LoadedImage | ImageReadError]:
    """Load each path in turn, yielding the error instead of raising so one bad file can be reported and skipped."""
    for path in paths:
        try:
            yield load_image(path)
        except ImageReadError as error:
            yield error


def _read_bytes(path: str | os.PathLike) -> bytes:
    # Python's open() handles non-ASCII paths on every OS, unlike cv2.imread on Windows.
    if os.path.isdir(path):
        raise ImageReadError(path, "is a folder")
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except OSError as error:
        raise ImageReadError(path, f"cannot read the file ({error.strerror or error})") from None
    if not data:
        raise ImageReadError(path, "empty file")
    return data


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the header states it, without decoding; None for a format or header we cannot read
    (then OpenCV's decoder, with its own limit of 2^30 pixels, is the judge)."""
    reader = _header_reader(data)
    if reader is None:
        return None
    try:
        with reader(io.BytesIO(data)) as header:
            return header.size
    except Exception:  # a damaged header: the decoder reports the file as undecodable
        return None


def _header_reader(data: bytes):
    return next((reader for signature, reader in _HEADER_READERS if data.startswith(signature)), None)


def _check_pixel_count(path, size: tuple[int, int] | None) -> None:
    if size is None:
        return
    limit = pixel_limit()
    width, height = size
    if width * height > limit * 1e6:
        raise ImageReadError(
            path, f"{_megapixels(width * height)} megapixels ({width}x{height}) is above the limit of "
                  f"{_megapixels(limit * 1e6)} (set --max-pixels or {PIXEL_LIMIT_VARIABLE} to raise it)"
        )


def _megapixels(pixels: float) -> str:
    megapixels = pixels / 1e6
    return f"{megapixels:.1f}".removesuffix(".0") if megapixels >= 100 else f"{megapixels:.3g}"


def _is_gray_png(data: bytes) -> bool:
    # Byte 25 is the colour type in the IHDR chunk, which the PNG standard puts first: 0 gray, 4 gray + alpha.
    return data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 25 and data[25] in (0, 4)


def _to_rgb_or_gray(decoded: np.ndarray, path) -> np.ndarray:
    if decoded.dtype.kind == "f":
        decoded = decoded.astype(np.float32, copy=False)
    elif decoded.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(path, f"unsupported pixel type {decoded.dtype}")
    if decoded.ndim == 2:
        return decoded
    channels = decoded.shape[2]
    if channels in (1, 2):  # gray, or gray plus alpha
        return decoded[:, :, 0]
    if channels in (3, 4):  # BGR or BGRA; alpha is dropped
        return decoded[:, :, 2::-1]
    raise ImageReadError(path, f"unsupported channel count {channels}")


def _orientation_to_apply(data: bytes) -> int:
    """The file's orientation tag (1 = upright), or 1 where the decoder has applied it already."""
    if data.startswith(b"\x89PNG") and b"eXIf" not in data:
        return 1  # Pillow would decode the whole PNG looking for a chunk that is not there
    reader = _header_reader(data)
    if reader is None:
        return 1
    try:
        with reader(io.BytesIO(data)) as image:
            pil_format = _ORIENTED_FORMATS.get(image.format or "")
            orientation = image.getexif().get(_ORIENTATION_TAG, 1) if pil_format else 1
    except Exception:  # metadata is a hint: a file OpenCV decodes but Pillow cannot parse stays as stored
        return 1
    if orientation not in range(2, 9) or _decoder_applies_orientation(pil_format):
        return 1
    return orientation


@functools.cache
def _decoder_applies_orientation(pil_format: str) -> bool:
    """Whether ``cv2.imdecode(..., IMREAD_UNCHANGED)`` already turns this format upright.

    OpenCV 5 does so for TIFF but not for JPEG or PNG, and older versions differ; asking once with a tiny
    rotated probe keeps us from turning an image twice or not at all.
    """
    exif = Image.Exif()
    exif[_ORIENTATION_TAG] = 6  # rotate 90 degrees: the decoded shape tells whether it was applied
    buffer = io.BytesIO()
    try:
        Image.fromarray(np.zeros((8, 16), np.uint8)).save(buffer, pil_format, exif=exif)
        decoded = cv2.imdecode(np.frombuffer(buffer.getvalue(), np.uint8), cv2.IMREAD_UNCHANGED)
    except Exception:
        return False
    return decoded is not None and decoded.shape[:2] == (16, 8)


def _apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn pixels stored with EXIF ``orientation`` upright (same result as Pillow's ``exif_transpose``)."""
    if orientation in (5, 7):
        pixels = np.swapaxes(pixels, 0, 1)
    match orientation:
        case 2:
            return pixels[:, ::-1]
        case 3 | 7:
            return np.rot90(pixels, 2)
        case 4:
            return pixels[::-1]
        case 6:
            return np.rot90(pixels, -1)
        case 8:
            return np.rot90(pixels, 1)
    return pixels


def _write_atomically(target: Path, data: bytes) -> None:
    # The temporary name starts with a dot so list_images never picks up a file being written.
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as file:
            file.write(data)
        os.replace(temporary, target)
    except OSError as error:
        if not target.parent.is_dir():
            raise DataError(f"cannot write image {target}: folder {target.parent} does not exist") from None
        raise DataError(f"cannot write image {target}: {error.strerror or error}") from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
