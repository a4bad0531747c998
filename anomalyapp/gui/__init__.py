"""Qt front end: the only package that imports PySide6, pyqtgraph or superqt."""

from anomalyapp.gui import pyside_fix as _pyside_fix  # noqa: F401  (before any signal is emitted)
