"""Imports flow one way: core <- engine, data, store <- services <- render <- {cli, gui}; only gui touches Qt
widgets, and render only Qt's painting classes (QtGui)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "anomalyapp"
ALLOWED = {
    "core": {"core"},
    "engine": {"core", "engine"},
    "data": {"core", "data"},
    "store": {"core", "store"},
    "services": {"core", "engine", "data", "store", "services"},
    "render": {"core", "services", "render"},
    "cli": {"core", "services", "render", "cli"},
    "gui": {"core", "services", "render", "gui"},
}
QT_MODULES = {"PySide6", "pyqtgraph", "superqt", "shiboken6"}
# render/ draws documents with Qt's painting classes: QtGui (and the QtCore value types it needs), no widgets.
RENDER_QT = {"PySide6", "PySide6.QtCore", "PySide6.QtGui"}


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_layers_import_only_downwards():
    problems = []
    for layer, allowed in ALLOWED.items():
        for path in (PACKAGE / layer).rglob("*.py"):
            for module in _imports(path):
                parts = module.split(".")
                if parts[0] == "anomalyapp" and len(parts) > 1 and parts[1] in ALLOWED and parts[1] not in allowed:
                    problems.append(f"{path.relative_to(PACKAGE)} imports {module}")
                if parts[0] in QT_MODULES and layer != "gui" and not (layer == "render" and module in RENDER_QT):
                    problems.append(f"{path.relative_to(PACKAGE)} imports {module} outside gui/")
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
