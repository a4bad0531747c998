"""The log file: set up by the entry points in the user log folder, with the traceback of any uncaught
exception, in a worker thread too (a windowed build has no stderr to lose it to)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from anomalyapp import __version__
from anomalyapp.core.logs import LOG_FILE_NAME


def _run(code: str, log_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANOMALYAPP_LOG_DIR=str(log_dir))
    return subprocess.run([sys.executable, *(["-c", textwrap.dedent(code)] if code else []), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_a_worker_threads_exception_lands_in_the_log_file(tmp_path):
    code = """
        import threading
        from anomalyapp.cli.main import configure_process

        configure_process()  # what the CLI entry point does first

        def work():
            raise RuntimeError("boom in the worker")

        worker = threading.Thread(target=work, name="inspection-worker")
        worker.start()
        worker.join()
        raise ValueError("boom in the main thread")
    """
    done = _run(code, tmp_path / "log")
    assert done.returncode == 1
    assert "boom in the worker" in done.stderr  # stderr still gets it where there is one
    text = (tmp_path / "log" / LOG_FILE_NAME).read_text(encoding="utf-8")
    worker_part = text[text.index("uncaught exception in thread inspection-worker"):]
    assert "Traceback (most recent call last)" in worker_part and ", in work\n" in worker_part
    assert "RuntimeError: boom in the worker" in worker_part
    assert "ValueError: boom in the main thread" in text


def test_the_cli_entry_point_writes_to_the_log_folder(tmp_path):
    done = _run("", tmp_path / "log", "-m", "anomalyapp", "report", str(tmp_path / "no-such-project"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    text = (tmp_path / "log" / LOG_FILE_NAME).read_text(encoding="utf-8")
    assert f"anomalyapp {__version__} report" in text
