"""A process of the window survives more signal emits than True has references (PySide6 6.12.0's emit bug)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.gui

SCRIPT = """
import sys
import anomalyapp.gui  # the guard is applied on import
from PySide6.QtCore import QObject
probe = QObject()
for _ in range(50000):  # a fresh process holds a few thousand references to True
    probe.objectNameChanged.emit("x")
print("alive")
"""


def test_many_emits_do_not_free_true():
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == "alive"
