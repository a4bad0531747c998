"""The application's log file: rotating, in the user log folder, with every uncaught exception's traceback.

A windowed build sends stderr to null, so without a file a traceback raised in a worker thread would be
lost. ``setup_logging`` is called once by each entry point (``gui.app.main`` and ``cli.main.main``); library
code only ever asks ``logging.getLogger(__name__)``.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
from pathlib import Path

from anomalyapp.core import paths

__all__ = ["LOG_FILE_NAME", "MAX_BYTES", "BACKUP_COUNT", "setup_logging"]

LOG_FILE_NAME = "anomalyapp.log"
MAX_BYTES = 2 * 1024 * 1024  # per file; with the backups at most 3 files, 6 MiB
BACKUP_COUNT = 2
FORMAT = "%(asctime)s %(levelname)s %(process)d %(threadName)s %(name)s: %(message)s"

log = logging.getLogger("anomalyapp")
_handler: logging.Handler | None = None


def setup_logging(level: int = logging.INFO) -> Path | None:
    """Attach the rotating file handler to the root logger and route uncaught exceptions (main thread and
    any other thread) to it. Idempotent: a second call returns the same file. Returns None when the log
    folder cannot be created or written (the application still runs; stderr keeps what it gets)."""
    global _handler
    if _handler is not None:
        return Path(_handler.baseFilename)
    folder = paths.log_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            folder / LOG_FILE_NAME, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8"
        )
    except OSError as exc:
        log.warning("no log file in %s: %s", folder, exc.strerror or exc)
        return None
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(level)
    logging.getLogger().addHandler(handler)
    if log.level == logging.NOTSET or log.level > level:
        log.setLevel(level)
    _handler = handler
    _install_exception_hooks()
    return Path(handler.baseFilename)


def _install_exception_hooks() -> None:
    previous_sys_hook = sys.excepthook
    previous_thread_hook = threading.excepthook

    def sys_hook(kind, value, tb):
        if not issubclass(kind, KeyboardInterrupt):
            log.critical("uncaught exception", exc_info=(kind, value, tb))
        previous_sys_hook(kind, value, tb)

    def thread_hook(args: threading.ExceptHookArgs):
        if args.exc_type is not SystemExit:
            name = args.thread.name if args.thread is not None else "?"
            log.critical("uncaught exception in thread %s", name, exc_info=(args.exc_type, args.exc_value,
                                                                            args.exc_traceback))
        previous_thread_hook(args)

    sys.excepthook = sys_hook
    threading.excepthook = thread_hook
