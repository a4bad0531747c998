"""The live inspection loop over a video file and over fake cameras that run fast, stall and get unplugged."""

from __future__ import annotations

import threading
import time
import tracemalloc

import cv2
import numpy as np
import pytest

from anomalyapp.core.cancel import CancelToken
from anomalyapp.core.errors import CameraError
from anomalyapp.core.types import Prediction
from anomalyapp.data.camera import CameraSource
from anomalyapp.data.images import load_image
from anomalyapp.services.camera import (
    GRAB_THREAD_NAME,
    CameraStatus,
    LiveFrame,
    live_inspection,
    save_capture,
)


def constant_prediction(frame: np.ndarray) -> Prediction:
    return Prediction(score=0.25, raw_score=1.0, anomaly_map=np.full(frame.shape[:2], 0.25, np.float32))


def no_sleep(seconds: float) -> None:
    pass


def grab_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == GRAB_THREAD_NAME and t.is_alive()]


@pytest.fixture(autouse=True)
def no_thread_outlives_a_test():
    yield
    assert grab_threads() == []


class FakeCamera:
    """A cv2.VideoCapture stand-in: ``limit`` frames (None: endless), one every ``interval`` seconds, then
    failed reads as from an unplugged device. Frame n is filled with n % 256 so tests can tell frames apart."""

    def __init__(self, limit: int | None = None, interval: float = 0.0005, opened: bool = True, size=(8, 8)):
        self.limit, self.interval, self.opened, self.size = limit, interval, opened, size
        self.produced = 0
        self.released = False

    def isOpened(self):
        return self.opened

    def read(self):
        if self.released or (self.limit is not None and self.produced >= self.limit):
            return False, None
        time.sleep(self.interval)  # like a driver waiting for the sensor, and it lets the loop run
        frame = np.full((*self.size, 3), self.produced % 256, np.uint8)
        self.produced += 1
        return True, frame

    def get(self, prop):
        return 0.0

    def set(self, prop, value):
        return False

    def release(self):
        self.released = True


def camera_factory(*captures):
    """A source factory whose n-th source opens the n-th capture (the last one repeating)."""
    opened = []

    def opener(spec):
        capture = captures[min(len(opened), len(captures) - 1)]
        opened.append(capture)
        return capture

    return (lambda: CameraSource(0, opener=opener)), opened


def video_file(path, count: int):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (32, 24))
    for n in range(count):
        writer.write(np.full((24, 32, 3), n * 20, np.uint8))
    writer.release()
    return path


def states(events) -> list[str]:
    return [e.state for e in events if isinstance(e, CameraStatus)]


def test_a_video_file_yields_every_frame_scored_then_ends(tmp_path):
    video = video_file(tmp_path / "clip.avi", 6)
    events = list(live_inspection(lambda: CameraSource(video), constant_prediction, CancelToken()))
    frames = [e for e in events if isinstance(e, LiveFrame)]
    assert states(events) == ["connecting", "live", "ended"] and isinstance(events[-1], CameraStatus)
    assert [f.index for f in frames] == list(range(6))
    assert all(f.dropped == 0 and f.frame.shape == (24, 32, 3) for f in frames)
    assert all(f.prediction.anomaly_map.shape == (24, 32) and f.prediction.verdict == "OK" for f in frames)
    assert frames[-1].fps > 0


def test_a_looping_file_starts_again(tmp_path):
    video = video_file(tmp_path / "clip.avi", 3)
    cancel = CancelToken()
    indices = []
    for event in live_inspection(lambda: CameraSource(video), None, cancel, loop_file=True):
        if isinstance(event, LiveFrame):
            assert event.prediction is None
            indices.append(event.index)
            if len(indices) == 7:
                cancel.cancel()
    assert indices == list(range(7)) and event.state == "stopped"


def test_a_camera_that_cannot_open_at_first_raises():
    factory, _ = camera_factory(FakeCamera(opened=False))
    with pytest.raises(CameraError, match="camera 0"):
        list(live_inspection(factory, None, CancelToken()))


def test_an_unplugged_camera_is_reconnected_with_growing_backoff():
    first = FakeCamera(limit=5)
    back = FakeCamera()
    factory, opened = camera_factory(first, FakeCamera(opened=False), FakeCamera(opened=False), back)
    cancel = CancelToken()
    waits = []
    events = []
    for event in live_inspection(factory, constant_prediction, cancel, sleep=waits.append):
        events.append(event)
        if back.produced and sum(isinstance(e, LiveFrame) for e in events[-3:]) == 3:
            cancel.cancel()
    assert states(events) == ["connecting", "live", "lost", "reconnecting", "reconnecting", "reconnecting",
                              "live", "stopped"]
    reconnecting = [e for e in events if isinstance(e, CameraStatus) and e.state == "reconnecting"]
    assert [e.retry_in for e in reconnecting] == [0.5, 1.0, 2.0]
    assert "retry in 2s" in reconnecting[-1].message and "cannot open camera 0" in reconnecting[-1].message
    assert sum(waits) == pytest.approx(3.5) and max(waits) <= 0.05  # waited in slices
    lost_at = next(n for n, e in enumerate(events) if isinstance(e, CameraStatus) and e.state == "lost")
    before = [e for e in events[:lost_at] if isinstance(e, LiveFrame)]
    after = [e for e in events[lost_at:] if isinstance(e, LiveFrame)]
    assert before and len(after) >= 3
    assert after[0].index >= 5 > before[-1].index  # numbering runs on across the reconnect
    assert len(opened) == 4 and first.released and back.released


def test_without_reconnect_a_lost_camera_ends_the_run():
    factory, _ = camera_factory(FakeCamera(limit=3))
    events = list(live_inspection(factory, None, CancelToken(), reconnect=False))
    assert states(events) == ["connecting", "live", "lost"]


def test_cancel_stops_a_live_camera_quickly_and_leaves_no_thread():
    factory, opened = camera_factory(FakeCamera())
    cancel = CancelToken()
    run = live_inspection(factory, constant_prediction, cancel)
    frames = []
    for event in run:
        if isinstance(event, LiveFrame):
            frames.append(event)
            if len(frames) == 5:
                break
    started = time.perf_counter()
    cancel.cancel()
    rest = list(run)
    # The camera never ends by itself, so an ignored cancel hangs; the bound is loose for a loaded CI machine.
    assert time.perf_counter() - started < 5
    assert states(rest)[-1] == "stopped"
    assert grab_threads() == [] and opened[0].released


def test_cancel_during_a_long_backoff_is_honoured_within_a_slice():
    factory, _ = camera_factory(FakeCamera(limit=1), FakeCamera(opened=False))
    cancel = CancelToken()
    run = live_inspection(factory, None, cancel, backoff=(60,), max_backoff=60)
    for event in run:
        if isinstance(event, CameraStatus) and event.state == "reconnecting":
            assert event.retry_in == 60
            break
    threading.Timer(0.1, cancel.cancel).start()
    started = time.perf_counter()
    assert states(list(run)) == ["stopped"]
    # Waiting out the back-off would take 60 s; honouring the cancel takes one slice. The bound leaves room
    # for a loaded machine without letting the back-off through.
    assert time.perf_counter() - started < 10


def test_closing_the_generator_early_stops_the_grab_thread():
    factory, opened = camera_factory(FakeCamera())
    run = live_inspection(factory, None, CancelToken())
    for event in run:
        if isinstance(event, LiveFrame):
            break
    run.close()
    assert grab_threads() == [] and opened[0].released


def test_a_slow_model_drops_frames_and_always_gets_a_recent_one():
    camera = FakeCamera(interval=0.001)
    factory, _ = camera_factory(camera)
    produced_when_scored = []

    def slow_predict(frame):
        time.sleep(0.02)
        produced_when_scored.append(camera.produced)
        return constant_prediction(frame)

    cancel = CancelToken()
    frames = []
    for event in live_inspection(factory, slow_predict, cancel):
        if isinstance(event, LiveFrame):
            frames.append(event)
            if len(frames) == 10:
                cancel.cancel()
    assert frames[-1].dropped > 0
    assert all(f.frame[0, 0, 0] == f.index % 256 for f in frames)
    # No queue: each frame is no older than the newest one there was when the previous scoring finished
    # (less the one the grab thread may have read but not yet handed over).
    for previous_done, frame in zip(produced_when_scored, frames[1:]):
        assert frame.index >= previous_done - 2
    assert frames[-1].dropped >= frames[-1].index - len(frames) - 1
    assert 0 < frames[-1].fps <= 60


def test_pausing_keeps_the_stream_open_but_scores_nothing():
    camera = FakeCamera(interval=0.001)
    factory, _ = camera_factory(camera)
    cancel, paused = CancelToken(), threading.Event()
    paused.set()
    threading.Timer(0.5, paused.clear).start()
    started = time.perf_counter()
    run = live_inspection(factory, None, cancel, paused=paused)
    first = next(e for e in run if isinstance(e, LiveFrame))
    assert time.perf_counter() - started >= 0.45  # a lower bound: a timer only ever fires late
    # The camera was read all along, and what the pause skipped is not counted as dropped.
    assert first.index > 50 and first.dropped == 0
    assert first.frame[0, 0, 0] == first.index % 256
    cancel.cancel()
    assert states(list(run)) == ["stopped"]


def test_memory_stays_flat_over_a_long_run():
    factory, _ = camera_factory(FakeCamera(interval=0.0002, size=(32, 32)))
    cancel = CancelToken()
    tracemalloc.start()
    try:
        scored = 0
        for event in live_inspection(factory, constant_prediction, cancel):
            if isinstance(event, LiveFrame):
                scored += 1
                if scored == 200:
                    baseline = tracemalloc.get_traced_memory()[0]
                if scored == 2000:
                    grown = tracemalloc.get_traced_memory()[0] - baseline
                    cancel.cancel()
            del event
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"memory grew by {grown} bytes over 1,800 frames"


def test_save_capture_writes_readable_pngs_with_unique_names(tmp_path):
    frame = np.zeros((10, 12, 3), np.uint8)
    frame[..., 0] = 200
    paths = [save_capture(frame, tmp_path / "captures") for _ in range(5)]
    assert len(set(paths)) == 5
    assert all(p.suffix == ".png" and p.name.startswith("capture_") for p in paths)
    assert np.array_equal(load_image(paths[-1]).pixels, frame)
    assert save_capture(frame, tmp_path, prefix="ng").name.startswith("ng_")


def test_front_ends_get_camera_sources_through_the_service():
    from anomalyapp.services import camera as camera_service

    source = camera_service.camera_source("2", (320, 240), opener=lambda spec: FakeCamera(limit=1))
    assert isinstance(source, camera_service.CameraSource) and source.spec == 2 and source.resolution == (320, 240)
    assert callable(camera_service.list_cameras) and camera_service.CameraInfo


def video_at(path, count: int, fps: float):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (32, 24))
    for n in range(count):
        writer.write(np.full((24, 32, 3), (n * 20) % 256, np.uint8))
    writer.release()
    return path


def test_a_video_file_plays_at_its_own_frame_rate(tmp_path):
    # 10 frames at 5 fps last two seconds; a fast model must not run through them at once
    video = video_at(tmp_path / "slow.avi", 10, 5.0)
    assert CameraSource(video).open().fps == pytest.approx(5.0)
    started = time.monotonic()
    frames = [e for e in live_inspection(lambda: CameraSource(video), constant_prediction, CancelToken())
              if isinstance(e, LiveFrame)]
    elapsed = time.monotonic() - started
    assert [f.index for f in frames] == list(range(10)) and frames[-1].dropped == 0
    assert elapsed >= 1.7  # nine intervals of 0.2 s
    gaps = np.diff([f.captured_at for f in frames])
    assert np.median(gaps) >= 0.17


def test_a_slow_model_skips_late_frames_as_dropped_like_a_camera(tmp_path):
    video = video_at(tmp_path / "fast.avi", 40, 20.0)  # two seconds of video

    def slow(frame):
        time.sleep(0.25)  # five frame periods per frame scored
        return constant_prediction(frame)

    started = time.monotonic()
    events = list(live_inspection(lambda: CameraSource(video), slow, CancelToken()))
    elapsed = time.monotonic() - started
    frames = [e for e in events if isinstance(e, LiveFrame)]
    assert states(events) == ["connecting", "live", "ended"]
    assert len(frames) <= 14 and frames[-1].dropped >= 20  # scoring every frame would take 10 s
    assert frames[-1].dropped + len(frames) <= 40 and frames[-1].index >= 30
    assert all(b.index > a.index for a, b in zip(frames, frames[1:]))
    assert elapsed < 6.0


def test_realtime_off_reads_every_frame_as_fast_as_the_model(tmp_path):
    video = video_at(tmp_path / "slow.avi", 10, 5.0)
    started = time.monotonic()
    frames = [e for e in live_inspection(lambda: CameraSource(video), None, CancelToken(), realtime=False)
              if isinstance(e, LiveFrame)]
    assert [f.index for f in frames] == list(range(10)) and time.monotonic() - started < 1.5
