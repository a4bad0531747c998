"""Live inspection: score a camera's newest frame as fast as the model allows, and never fall behind.

A camera keeps producing frames whether or not the model is ready for them. Queueing them would show the
operator a part that has long left the line, so a grab thread keeps only the newest frame in a one-slot
holder and counts the ones it replaced as dropped. A video file plays at its own frame rate (what it reports
as CAP_PROP_FPS), as if a camera were filming the line: each frame is scored at its time, and a frame whose
successor is already due when it is read is skipped and counted as dropped, so a slow model falls behind no
more than a live camera would. A file that reports no rate, or ``realtime=False`` (a benchmark of the
model's own speed), reads every frame as fast as the model takes them.

``live_inspection`` is a generator, like every long job here: the CLI iterates it, the GUI runs it in a
worker. It yields ``LiveFrame``s and ``CameraStatus``es and stops within ``_SLICE`` seconds of a cancel.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from anomalyapp.core.cancel import CancelToken
from anomalyapp.core.errors import CameraError, DataError
from anomalyapp.core.types import Prediction
from anomalyapp.data.camera import CameraInfo, CameraSource, list_cameras
from anomalyapp.data.images import save_image

# The front ends may import services but not data, so the camera's own types are offered from here too.
__all__ = [
    "CameraInfo",
    "CameraSource",
    "CameraStatus",
    "LiveEvent",
    "LiveFrame",
    "camera_source",
    "list_cameras",
    "live_inspection",
    "save_capture",
]

# The longest the loop waits (for a frame, in a pause, in a back-off) before it looks at the cancel token.
_SLICE = 0.05
# How long stopping waits for a grab thread stuck in a driver call; it then closes its source itself.
_JOIN_TIMEOUT = 3.0
_FPS_WINDOW = 30

GRAB_THREAD_NAME = "anomalyapp-camera-grab"


@dataclass
class LiveFrame:
    frame: np.ndarray  # HxWx3 uint8 RGB
    prediction: Prediction | None  # None when no model was given (preview only)
    index: int  # frames read from the source before this one; gaps were dropped or skipped in a pause
    captured_at: float  # time.time() when the frame was read
    fps: float  # frames scored per second, averaged over the last few
    dropped: int  # frames replaced unscored so far, because the model was busy


@dataclass
class CameraStatus:
    state: str  # "connecting", "live", "lost", "reconnecting", "ended" or "stopped"
    message: str
    retry_in: float | None = None


LiveEvent = LiveFrame | CameraStatus


def live_inspection(
    source_factory: Callable[[], CameraSource],
    predict: Callable[[np.ndarray], Prediction] | None,
    cancel: CancelToken,
    *,
    paused: threading.Event | None = None,
    reconnect: bool = True,
    loop_file: bool = False,
    backoff: Sequence[float] = (0.5, 1, 2, 4, 8),
    max_backoff: float = 8.0,
    sleep: Callable[[float], None] = time.sleep,
    realtime: bool = True,
) -> Generator[LiveEvent, None, None]:
    """Read frames from a new source from ``source_factory`` and score each with ``predict``.

    The first open failing raises ``CameraError`` (a wrong choice is best said at once). A camera or
    stream lost later is reopened, through a fresh source, after each wait in ``backoff`` (the last one
    repeating, each at most ``max_backoff``) until frames flow again or ``cancel`` is set. A file ends
    with "ended", or starts again with ``loop_file``; it plays at its own frame rate unless ``realtime`` is
    False. While ``paused`` is set the stream stays open but nothing is scored or yielded (a file's clock
    stops too). An exception from ``predict`` propagates after the source is closed.
    """
    if not backoff:
        raise ValueError("backoff needs at least one wait")
    delays = [min(float(delay), max_backoff) for delay in backoff]
    source = source_factory()
    yield CameraStatus("connecting", f"opening {source.description}")
    source.open()
    if source.is_file:
        clock = _PlaybackClock(source.fps if realtime else 0.0)
        yield from _play_file(source, source_factory, predict, cancel, paused, loop_file, sleep, clock)
    else:
        yield from _watch_camera(source, source_factory, predict, cancel, paused, reconnect, delays, sleep)


def camera_source(spec: int | str, resolution: tuple[int, int] | None = None, *, opener=None) -> CameraSource:
    """A closed source for a camera index, video file or stream URL; the usual ``source_factory`` body."""
    return CameraSource(spec, resolution, opener=opener)


def save_capture(frame: np.ndarray, folder: str | Path, prefix: str = "capture") -> Path:
    """Write ``frame`` (RGB) as ``<prefix>_<date>-<time>-<ms>.png`` in ``folder``, never over an existing file."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create folder {folder}: {error.strerror or error}") from None
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
    # Choosing the name and writing happen under one lock so two captures in the same millisecond,
    # even from two threads, get two files.
    with _naming_lock:
        path = folder / f"{prefix}_{stamp}.png"
        number = 1
        while path.exists():
            number += 1
            path = folder / f"{prefix}_{stamp}_{number}.png"
        save_image(path, frame)
    return path


_naming_lock = threading.Lock()


def _play_file(source, source_factory, predict, cancel, paused, loop_file, sleep, clock):
    rate = _RateMeter()
    index = 0
    frames_this_pass = 0
    dropped = 0
    try:
        yield CameraStatus("live", f"playing {source.description}")
        while not cancel.cancelled:
            if paused is not None and paused.is_set():
                rate.reset()
                clock.pause()
                sleep(_SLICE)
                continue
            frame = source.read()
            if frame is None:
                source.close()
                if loop_file and frames_this_pass:  # a file with no frames at all would loop forever
                    source = source_factory().open()
                    frames_this_pass = 0
                    clock.restart()
                    continue
                yield CameraStatus("ended", f"{source.description} ended after {index} frames")
                return
            due_in = clock.due_in(frames_this_pass)
            index += 1
            frames_this_pass += 1
            if clock.too_late(due_in):
                dropped += 1
                continue
            if due_in > 0 and not _wait(due_in, cancel, sleep):
                break
            captured_at = time.time()
            prediction = predict(frame) if predict is not None else None
            yield LiveFrame(frame, prediction, index - 1, captured_at, rate.tick(), dropped)
    finally:
        source.close()
    yield CameraStatus("stopped", f"stopped {source.description}")


def _watch_camera(source, source_factory, predict, cancel, paused, reconnect, delays, sleep):
    description = source.description
    rate = _RateMeter()
    grabber = _Grabber(source, _NewestFrame(), paused)
    failures = 0  # reopen attempts since frames last flowed; picks the next back-off
    announce_live = True
    try:
        while not cancel.cancelled:
            if paused is not None and paused.is_set():
                grabber.newest.pause()
                rate.reset()  # the pause is not the model's slowness
                if not grabber.newest.ended:
                    sleep(_SLICE)
                    continue
            taken = grabber.newest.take(_SLICE)
            if taken is not None:
                if announce_live:
                    announce_live, failures = False, 0
                    rate.reset()
                    yield CameraStatus("live", f"{description} is live")
                frame, index, captured_at, dropped = taken
                del taken
                prediction = predict(frame) if predict is not None else None
                yield LiveFrame(frame, prediction, index, captured_at, rate.tick(), dropped)
                del frame  # hold no frame while waiting for the next: the consumer owns it now
                continue
            if not grabber.newest.ended:
                continue
            grabber.stop()
            yield CameraStatus("lost", f"{description} stopped sending frames")
            if not reconnect:
                return
            reason = f"reconnecting to {description}"
            while grabber.stopped and not cancel.cancelled:
                delay = delays[min(failures, len(delays) - 1)]
                failures += 1
                yield CameraStatus("reconnecting", f"{reason}: retry in {delay:g}s", retry_in=delay)
                if not _wait(delay, cancel, sleep):
                    break
                try:
                    source = source_factory().open()
                except CameraError as error:
                    reason = str(error)
                    continue
                # Counts carry over, so frame indices and the dropped total run on across reconnects.
                grabber = _Grabber(source, grabber.newest.successor(), paused)
                announce_live = True
    finally:
        grabber.stop()
    yield CameraStatus("stopped", f"stopped {description}")


def _wait(seconds: float, cancel: CancelToken, sleep) -> bool:
    """Sleep ``seconds`` in slices, so a cancel is seen within one; False if it was cancelled."""
    waited = 0.0
    while waited < seconds:
        if cancel.cancelled:
            return False
        step = min(_SLICE, seconds - waited)
        sleep(step)
        waited += step
    return not cancel.cancelled


class _NewestFrame:
    """The one-slot holder between a grab thread and the scoring loop: a new frame replaces an unscored one."""

    def __init__(self, frames_read: int = 0, dropped: int = 0):
        self._changed = threading.Condition()
        self._slot: tuple[np.ndarray, int, float] | None = None
        self._paused = False
        self.frames_read = frames_read
        self.dropped = dropped
        self.ended = False

    def successor(self) -> _NewestFrame:
        """A holder for the next connection that goes on counting from this one."""
        with self._changed:
            return _NewestFrame(self.frames_read, self.dropped)

    def put(self, frame: np.ndarray) -> None:
        with self._changed:
            if self._slot is not None and not self._paused:
                self.dropped += 1
            self._slot = (frame, self.frames_read, time.time())
            self.frames_read += 1
            self._changed.notify()

    def pause(self) -> None:
        """Frames replaced from now until the next ``take`` were skipped by choice, not dropped by a busy model."""
        with self._changed:
            self._paused = True

    def end(self) -> None:
        with self._changed:
            self.ended = True
            self._changed.notify()

    def take(self, timeout: float) -> tuple[np.ndarray, int, float, int] | None:
        """The newest frame with its index, capture time and the dropped count; None after ``timeout`` or the end."""
        with self._changed:
            self._changed.wait_for(lambda: self._slot is not None or self.ended, timeout)
            if self._slot is None:
                return None
            (frame, index, captured_at), self._slot = self._slot, None
            self._paused = False
            return frame, index, captured_at, self.dropped


class _Grabber:
    """A daemon thread reading one open camera or stream as fast as it delivers, into a ``_NewestFrame``.

    The thread owns the source while it runs and closes it on the way out, so a source is never
    released while another thread is inside its ``read``.
    """

    def __init__(self, source: CameraSource, newest: _NewestFrame, paused: threading.Event | None):
        if paused is not None and paused.is_set():
            newest.pause()  # before the first frame, or the loop could see it replaced before it looks
        self.newest = newest
        self._source = source
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=GRAB_THREAD_NAME, daemon=True)
        self._thread.start()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(_JOIN_TIMEOUT)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self._source.read()
                if frame is None:
                    break
                self.newest.put(frame)
                del frame
        finally:
            self._source.close()
            self.newest.end()


class _PlaybackClock:
    """When each frame of a file is due at the file's own rate. The first frame read sets the clock; a pause
    stops it. With no rate (0 fps) every frame is due at once and none is ever late."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self._start: float | None = None
        self._paused_at: float | None = None

    def due_in(self, frame: int) -> float:
        """Seconds until ``frame`` (counted from the start of this pass) is due; negative when it is late."""
        if not self.period:
            return 0.0
        now = time.monotonic()
        if self._start is None:
            self._start = now - frame * self.period
        if self._paused_at is not None:
            self._start += now - self._paused_at
            self._paused_at = None
        return self._start + frame * self.period - now

    def too_late(self, due_in: float) -> bool:
        """A frame is skipped when the next one is already due: showing it would lag behind the file."""
        return bool(self.period) and due_in <= -self.period

    def pause(self) -> None:
        if self._paused_at is None and self._start is not None:
            self._paused_at = time.monotonic()

    def restart(self) -> None:
        self._start = self._paused_at = None


class _RateMeter:
    """Events per second over the last ``_FPS_WINDOW`` events; bounded, however long the run."""

    def __init__(self) -> None:
        self._times: deque[float] = deque(maxlen=_FPS_WINDOW)

    def reset(self) -> None:
        self._times.clear()

    def tick(self) -> float:
        self._times.append(time.monotonic())
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0
