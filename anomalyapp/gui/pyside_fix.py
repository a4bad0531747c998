"""A guard against a reference-count bug of PySide6 6.12.0, applied once when ``anomalyapp.gui`` is imported.

In PySide6 6.12.0 every ``SignalInstance.emit()`` called from Python returns ``True`` without a reference of its
own, so each emit takes one reference away from ``True``. A process starts with a few thousand references to
``True``; after that many emits (a camera stream at 10 fps, a long review, the GUI test suite) CPython frees
``True`` and aborts with "bool_dealloc: deallocating True or False".

Until a fixed PySide6 is installed, the guard measures the loss on one emit and, when there is one, gives
``True`` and ``False`` a reserve of references so large that no process lives long enough to spend it
(CPython never frees them otherwise). From Python 3.12 on, ``True`` and ``False`` are immortal and the bug
is harmless, so nothing is done there.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject

_RESERVE = 1 << 40  # references; at a million emits a second this lasts about 12 days


def emit_steals_a_reference() -> bool:
    """Whether an emit from Python takes a reference from ``True`` (the 6.12.0 bug)."""
    probe = QObject()
    before = sys.getrefcount(True)
    probe.objectNameChanged.emit("probe")
    return sys.getrefcount(True) < before


def apply() -> bool:
    """Give ``True`` and ``False`` the reserve when this PySide6 needs it; returns whether it did."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython" or not emit_steals_a_reference():
        return False
    for value in (True, False):
        # ob_refcnt is the first field of every CPython object, at the address id() returns.
        ctypes.c_ssize_t.from_address(id(value)).value += _RESERVE
    return True


applied = apply()
