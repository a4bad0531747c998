"""``anomalyapp watch`` as a station runs it: a real process, a real folder, Ctrl+C to stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli_helpers import assert_clean_error, run_cli

sys.path.insert(0, str(Path(__file__).parent.parent / "services"))
from hot_folder_helpers import make_project, part_png, train_random_model  # noqa: E402


@pytest.fixture(scope="module")
def model(demo_line, tmp_path_factory):
    return train_random_model(demo_line, tmp_path_factory.mktemp("watch_model") / "model")


@pytest.fixture
def project(tmp_path, model, demo_line):
    return make_project(tmp_path / "project", model, demo_line)


class Station:
    """``python -m anomalyapp watch ...`` with its output lines collected as they come."""

    def __init__(self, *args):
        self.process = subprocess.Popen([sys.executable, "-m", "anomalyapp", "watch", *map(str, args)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=lambda s=stream, into=lines: [into.append(line.rstrip("\n")) for line in s],
                             daemon=True).start()

    def wait_for(self, condition, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.poll() is None, f"watch ended early: {self.err}"
            assert time.monotonic() < deadline, f"timed out: out {self.out}, err {self.err}"
            time.sleep(0.05)

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=60)
        time.sleep(0.2)  # the reader threads take the last lines
        return code


def test_watch_prints_a_line_per_verdict_writes_overlays_and_stops_cleanly_on_ctrl_c(project, demo_line, tmp_path):
    inbox, overlays = tmp_path / "inbox", tmp_path / "overlays"
    inbox.mkdir()
    station = Station(project.model_path, inbox, "--out", overlays, "--sort", "copy", "--settle", "0.3",
                      "--device", "cpu")
    try:
        station.wait_for(lambda: any("Ctrl+C stops" in line for line in station.err))
        for index in range(3):  # written whole under a hidden name, then renamed, as camera software does:
            hidden = inbox / f".part-{index}.png"  # a part seen half-written would settle after the next one
            hidden.write_bytes(part_png(demo_line, index))
            os.replace(hidden, inbox / f"part-{index}.png")
        (inbox / "readme.txt").write_text("not a part")
        station.wait_for(lambda: len(station.out) == 3 and any("readme.txt" in line for line in station.err))
    finally:
        code = station.interrupt()
    assert code == 0, station.err
    assert [line.split(",")[0] for line in station.out] == ["part-0.png", "part-1.png", "part-2.png"]
    assert all(line.split(",")[2] in ("OK", "NG", "Review") for line in station.out)
    assert any(line.startswith("skipped readme.txt: not an image file") for line in station.err)
    assert any(line.startswith("stopped: 3 inspected") for line in station.err)
    assert sorted(p.name for p in overlays.iterdir()) == [f"part-{i}_overlay.png" for i in range(3)]
    copied = sorted(p.name for p in inbox.glob("*/*.png"))
    assert copied == ["part-0.png", "part-1.png", "part-2.png"] and (inbox / "part-0.png").exists()
    assert "Traceback" not in "\n".join(station.err)


def test_watch_refuses_bad_input_in_one_line(project, model, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    assert_clean_error(run_cli("watch", project.model_path, tmp_path / "nowhere"), "nowhere", "does not exist")
    assert_clean_error(run_cli("watch", model, inbox), "in none", "--project")
    assert_clean_error(run_cli("watch", model, inbox, "--project", tmp_path / "inbox"), "not an anomalyapp project")
    assert_clean_error(run_cli("watch", project.model_path, inbox, "--queue", "0"), "--queue")
