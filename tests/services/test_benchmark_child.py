"""The benchmark's worker process never outlives the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from anomalyapp.services.benchmark import run_in_child

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

_PARENT = """
import time
from anomalyapp.services.benchmark import run_in_child
run_in_child(time.sleep, (120,), started=lambda pid: print(pid, flush=True))
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited child nobody has reaped yet counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.parametrize("signal_number", [signal.SIGKILL, signal.SIGTERM])
def test_the_worker_exits_when_its_parent_is_killed(signal_number):
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    try:
        worker = int(parent.stdout.readline())
        time.sleep(0.5)
        assert _running(worker)
        os.kill(parent.pid, signal_number)
        parent.wait(10)
        deadline = time.monotonic() + 5
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(worker), f"worker {worker} still runs after its parent got {signal_number.name}"
    finally:
        parent.kill()
        parent.wait()


def test_a_worker_returns_its_value_and_reports_its_failure():
    assert run_in_child(divmod, (7, 2)) == (3, 1)
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        run_in_child(divmod, (1, 0))
