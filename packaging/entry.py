"""Entry script of both packaged executables (the window and the command line): ``anomalyapp.__main__.main``.

No arguments, ``--demo``, ``--project`` or ``--self-test`` open the window; a subcommand runs the CLI, as with
``python -m anomalyapp``.

Startup probe: with ``ANOMALYAPP_STARTUP_PROBE=1`` the first paint of the main window prints one line to
stderr::

    startup-probe: main window painted 2.84 s after process start (monotonic 1234.567890)

"process start" is the kernel's start time of this process (Linux ``/proc/self/stat``), so the figure includes
the bootloader unpacking nothing (one-folder build) and loading Python, Qt and torch; elsewhere it is counted
from this script's first line. ``monotonic`` is ``time.monotonic()`` at that paint, for a launcher that timed
the start itself. With ``ANOMALYAPP_STARTUP_PROBE=exit`` the window closes right after that paint.
The same script runs from a source install (``python packaging/entry.py``), so both can be compared.
"""

from __future__ import annotations

import os
import sys
import time

_SCRIPT_START = time.monotonic()


def _seconds_since_process_start() -> float:
    """Seconds since the kernel started this process (Linux); since this script started elsewhere."""
    try:
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5); fields[0] is field 3
        ticks = os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime", "rb") as handle:
            uptime = float(handle.read().split()[0])
        return uptime - start_ticks / ticks
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic() - _SCRIPT_START


def _install_startup_probe(mode: str) -> None:
    """Report the first paint of the main window (wraps ``create_application`` to add an event filter)."""
    import anomalyapp.gui.app as gui_app  # light: Qt is imported inside its functions

    create_application = gui_app.create_application

    def create_with_probe(*args, **kwargs):
        app = create_application(*args, **kwargs)
        from PySide6.QtCore import QEvent, QObject, QTimer

        class Probe(QObject):
            done = False

            def eventFilter(self, watched, event):  # noqa: N802 (Qt's name)
                if not self.done and event.type() == QEvent.Type.Paint and type(watched).__name__ == "MainWindow":
                    self.done = True
                    print(
                        f"startup-probe: main window painted {_seconds_since_process_start():.2f} s after process "
                        f"start (monotonic {time.monotonic():.6f})",
                        file=sys.stderr,
                        flush=True,
                    )
                    if mode == "exit":
                        QTimer.singleShot(0, app.quit)
                return False

        app._startup_probe = Probe(app)  # keep a reference for the app's lifetime
        app.installEventFilter(app._startup_probe)
        return app

    gui_app.create_application = create_with_probe


def run() -> int:
    import multiprocessing

    # Before anything else: a process that multiprocessing's spawn method starts from this executable becomes
    # the worker here and never returns (PyInstaller's runtime hook makes this work on every platform).
    multiprocessing.freeze_support()
    probe = os.environ.get("ANOMALYAPP_STARTUP_PROBE", "").strip().lower()
    if probe and probe not in ("0", "no", "false"):
        _install_startup_probe(probe)
    from anomalyapp.__main__ import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
