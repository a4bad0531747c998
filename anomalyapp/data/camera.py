"""Cameras, video files and network streams as one source of RGB frames.

A thin wrapper over ``cv2.VideoCapture`` with no threads: the live inspection service decides who reads
and when. Like ``data.images`` this is where OpenCV's BGR order becomes RGB, so every frame leaving here
is HxWx3 uint8 RGB, whatever the device delivers (gray, BGRA, 16-bit).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from anomalyapp.core.errors import CameraError

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")

# Anything with VideoCapture's isOpened/read/release/get/set; tests inject fakes to simulate unplugging.
Opener = Callable[[int | str], Any]


@dataclass(frozen=True)
class CameraInfo:
    index: int
    name: str
    width: int
    height: int


def open_capture(spec: int | str) -> cv2.VideoCapture:
    """The default opener: a ``cv2.VideoCapture`` with the backend that opens cameras fastest on this OS."""
    if isinstance(spec, int):
        if sys.platform == "win32":
            return cv2.VideoCapture(spec, cv2.CAP_DSHOW)  # MSMF takes seconds to open and to fail
        if sys.platform.startswith("linux"):
            return cv2.VideoCapture(spec, cv2.CAP_V4L2)  # CAP_ANY also tries FFmpeg and warns
    return cv2.VideoCapture(spec)


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own stderr warnings (a missing camera is an answer, not a problem to log)."""
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)


def list_cameras(max_index: int = 6, opener: Opener | None = None) -> list[CameraInfo]:
    """Cameras answering at indices ``0 .. max_index - 1``, each opened briefly and closed again."""
    opener = opener or open_capture
    found = []
    with quiet_opencv():
        for index in range(max_index):
            capture = opener(index)
            try:
                if capture.isOpened():
                    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
                    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
                    found.append(CameraInfo(index, _camera_name(index), width, height))
            finally:
                capture.release()
    return found


class CameraSource:
    """One camera (by index), video file (by path) or stream (by URL). Not thread-safe: one reader at a time."""

    def __init__(self, spec: int | str | os.PathLike, resolution: tuple[int, int] | None = None, *, opener=None):
        if isinstance(spec, str) and spec.strip().isdigit():
            spec = int(spec)  # "0" from a command line or settings file means the first camera
        self.spec: int | str = spec if isinstance(spec, int) else os.fspath(spec)
        self.resolution = resolution
        self._opener: Opener = opener or open_capture
        self._capture = None
        self._last_size: tuple[int, int] | None = None

    @property
    def is_camera(self) -> bool:
        return isinstance(self.spec, int)

    @property
    def is_stream(self) -> bool:
        return not self.is_camera and urlsplit(self.spec).scheme.lower() in STREAM_SCHEMES

    @property
    def is_file(self) -> bool:
        return not self.is_camera and not self.is_stream

    @property
    def is_open(self) -> bool:
        return self._capture is not None

    @property
    def description(self) -> str:
        """A name for messages; a password in a stream URL is hidden."""
        if self.is_camera:
            return f"camera {self.spec}"
        if self.is_stream:
            return f"stream {_without_password(self.spec)}"
        return f"video file {self.spec}"

    @property
    def fps(self) -> float:
        """The nominal frame rate the device or file reports; 0 when it does not say."""
        value = self._get(cv2.CAP_PROP_FPS)
        return value if math.isfinite(value) and value > 0 else 0.0

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames read so far, else as reported; (0, 0) when unknown."""
        if self._last_size:
            return self._last_size
        return int(self._get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._get(cv2.CAP_PROP_FRAME_HEIGHT))

    def open(self) -> CameraSource:
        """Open the source (again opening an open one does nothing); ``CameraError`` says which and why not."""
        if self._capture is not None:
            return self
        if self.is_file and not Path(self.spec).is_file():
            reason = "is a folder" if Path(self.spec).is_dir() else "file not found"
            raise CameraError(f"cannot open {self.description}: {reason}")
        with quiet_opencv():
            try:
                capture = self._opener(self.spec)
                opened = capture.isOpened()
            except cv2.error as error:
                raise CameraError(f"cannot open {self.description}: {error.err or error}") from None
        if not opened:
            capture.release()
            raise CameraError(f"cannot open {self.description}: {self._why_not_opened()}")
        self._capture = capture
        self._last_size = None
        if self.resolution and not self.is_file:
            self._apply_resolution(*self.resolution)
        return self

    def read(self) -> np.ndarray | None:
        """The next frame as HxWx3 uint8 RGB, or None when the file ended or the device stopped answering."""
        if self._capture is None:
            raise CameraError(f"{self.description} is not open")
        try:
            ok, frame = self._capture.read()
        except cv2.error:
            return None  # some backends raise instead of failing when the device is unplugged
        if not ok or frame is None or frame.size == 0:
            return None
        rgb = _to_rgb_uint8(frame)
        self._last_size = (rgb.shape[1], rgb.shape[0])
        return rgb

    def set_resolution(self, width: int, height: int) -> tuple[int, int]:
        """Ask a camera or stream for another frame size; returns the size the device actually chose."""
        if self.is_file:
            raise CameraError(f"cannot change the resolution of {self.description}")
        self.resolution = (int(width), int(height))
        if self._capture is None:
            return self.resolution  # applied on open
        self._apply_resolution(*self.resolution)
        return self.frame_size

    def close(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()

    def __iter__(self) -> Iterator[np.ndarray]:
        while (frame := self.read()) is not None:
            yield frame

    def __enter__(self) -> CameraSource:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CameraSource({self.description!r}, open={self.is_open})"

    def _get(self, prop: int) -> float:
        if self._capture is None:
            return 0.0
        value = float(self._capture.get(prop) or 0.0)
        return value if math.isfinite(value) else 0.0

    def _apply_resolution(self, width: int, height: int) -> None:
        self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._last_size = None  # the next frame tells what the device made of it

    def _why_not_opened(self) -> str:
        if self.is_camera:
            return "no camera at this index, or another program is using it"
        if self.is_stream:
            return "no answer (check the address, the network and any login)"
        return "not a video OpenCV can decode"


def _to_rgb_uint8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)  # raw 16-bit sensors; the model takes 8 bits
    elif frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _camera_name(index: int) -> str:
    # Linux names its video devices in sysfs; elsewhere OpenCV offers no name, so the index is the name.
    try:
        name = Path(f"/sys/class/video4linux/video{index}/name").read_text(encoding="utf-8").strip()
    except OSError:
        name = ""
    return name or f"Camera {index}"
