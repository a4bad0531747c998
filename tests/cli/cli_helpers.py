"""Running the CLI as a user would, and checking its one-line errors (shared by the CLI tests)."""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anomalyapp", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def assert_clean_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2 and exactly one error line naming every fragment; never a traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in error_lines[0]
