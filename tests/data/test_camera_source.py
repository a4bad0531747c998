"""CameraSource over a real video file written here, and over fake captures standing in for devices."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from anomalyapp.core.errors import CameraError
from anomalyapp.data.camera import CameraInfo, CameraSource, list_cameras

RED_BGR = (0, 0, 255)


def write_video(path, frames_bgr, fps: float = 10.0):
    height, width = frames_bgr[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "this OpenCV build cannot write MJPG .avi files"
    for frame in frames_bgr:
        writer.write(frame)
    writer.release()
    return path


class FakeCapture:
    """Just enough of cv2.VideoCapture: the given frames, then failed reads."""

    def __init__(self, frames=(), opened=True, props=None):
        self.frames = list(frames)
        self.opened = opened
        self.props = dict(props or {})
        self.released = False

    def isOpened(self):
        return self.opened

    def read(self):
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def get(self, prop):
        return self.props.get(prop, 0.0)

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def release(self):
        self.released = True


def test_reads_every_frame_of_a_video_file_in_rgb(tmp_path):
    video = write_video(tmp_path / "red.avi", [np.full((48, 64, 3), RED_BGR, np.uint8)] * 7, fps=10)
    with CameraSource(video) as source:
        assert source.is_file and not source.is_camera and not source.is_stream
        assert source.fps == pytest.approx(10.0)
        frames = list(source)
        assert source.frame_size == (64, 48)
    assert len(frames) == 7
    first = frames[0]
    assert first.shape == (48, 64, 3) and first.dtype == np.uint8
    assert first[24, 32, 0] > 200 and first[24, 32, 2] < 50  # red lands in channel 0: RGB, not BGR
    assert not source.is_open


def test_missing_file_is_a_camera_error_naming_it(tmp_path):
    missing = tmp_path / "nowhere.avi"
    with pytest.raises(CameraError, match="nowhere.avi.*file not found"):
        CameraSource(missing).open()


def test_undecodable_file_is_a_camera_error(tmp_path):
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(CameraError, match="junk.avi"):
        CameraSource(junk).open()


def test_camera_that_does_not_open_says_which_and_releases_it():
    capture = FakeCapture(opened=False)
    with pytest.raises(CameraError, match="camera 3: no camera at this index"):
        CameraSource(3, opener=lambda spec: capture).open()
    assert capture.released


def test_gray_and_bgra_devices_give_rgb_and_an_unplugged_one_gives_none():
    gray = np.full((4, 5), 77, np.uint8)
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., 0] = 255  # blue
    source = CameraSource("1", opener=lambda spec: FakeCapture([gray, bgra]))
    assert source.spec == 1 and source.is_camera and source.description == "camera 1"
    with source:
        assert np.array_equal(source.read(), np.full((4, 5, 3), 77, np.uint8))
        assert source.read()[0, 0].tolist() == [0, 0, 255]
        assert source.read() is None
        assert source.read() is None  # stays None rather than raising
    with pytest.raises(CameraError, match="not open"):
        source.read()


def test_resolution_is_asked_for_on_open_and_refused_for_files(tmp_path):
    capture = FakeCapture()
    source = CameraSource(0, resolution=(640, 480), opener=lambda spec: capture).open()
    assert capture.props[cv2.CAP_PROP_FRAME_WIDTH] == 640 and capture.props[cv2.CAP_PROP_FRAME_HEIGHT] == 480
    assert source.set_resolution(320, 240) == (320, 240)
    source.close()
    with pytest.raises(CameraError, match="resolution"):
        CameraSource(tmp_path / "clip.avi").set_resolution(320, 240)


def test_stream_description_hides_the_password():
    source = CameraSource("rtsp://admin:secret@10.0.0.5:554/live", opener=lambda spec: FakeCapture())
    assert source.is_stream and not source.is_file
    assert "secret" not in source.description and "10.0.0.5:554/live" in source.description


def test_list_cameras_reports_open_devices_and_closes_each():
    captures = {}

    def opener(index):
        captures[index] = FakeCapture(opened=index in (0, 2), props={cv2.CAP_PROP_FRAME_WIDTH: 640.0,
                                                                    cv2.CAP_PROP_FRAME_HEIGHT: 480.0})
        return captures[index]

    found = list_cameras(max_index=4, opener=opener)
    assert [(c.index, c.width, c.height) for c in found] == [(0, 640, 480), (2, 640, 480)]
    assert all(isinstance(c, CameraInfo) and c.name for c in found)
    assert all(c.released for c in captures.values())


def test_list_cameras_on_this_machine_is_quick():
    started = time.perf_counter()
    assert isinstance(list_cameras(), list)  # usually empty here; must not hang either way
    assert time.perf_counter() - started < 5.0
