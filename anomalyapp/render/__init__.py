"""Documents drawn with Qt's painting classes (``PySide6.QtGui`` only, no widgets): the PDF QA report.

A layer beside the front ends: it imports ``core`` and ``services`` and is imported by ``cli`` and ``gui``.
Nothing is imported here at package import, so ``import anomalyapp.render`` does not load Qt.
"""
