"""The layer rules, checked by import-linter with the contracts in pyproject.toml (core <- engine, data, store
<- services <- render <- {cli, gui}; only gui imports Qt widgets, pyqtgraph and superqt; the front ends never
import torch, faiss or the engine), plus what import-linter cannot express."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "anomalyapp"
# render/ draws documents with Qt's painting classes: QtGui (and the QtCore value types it needs), no widgets.
# import-linter sees an external package as one node (PySide6), so this part stays an AST check.
RENDER_QT = {"PySide6", "PySide6.QtCore", "PySide6.QtGui"}


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_import_contracts_hold():
    """`lint-imports` over the contracts in pyproject.toml, in the venv running the tests."""
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    done = subprocess.run([sys.executable, "-c", code, "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_finds_nothing():
    """The conservative lint configured in pyproject.toml ([tool.ruff]) over the code, tests and tools."""
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "anomalyapp", "tests", "tools", "packaging"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_render_uses_only_qts_painting_classes():
    problems = [
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in (PACKAGE / "render").rglob("*.py")
        for module in _imports(path)
        if module.split(".")[0] == "PySide6" and module not in RENDER_QT
    ]
    assert not problems, "\n".join(problems)


def test_engine_and_services_never_print():
    offenders = []
    for layer in ("core", "engine", "data", "store", "services"):
        for path in (PACKAGE / layer).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders, offenders


def test_package_import_is_light():
    import subprocess
    import sys

    code = "import anomalyapp, sys; print(any(m in sys.modules for m in ('torch', 'PySide6')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
