"""How an inspected image is named to a person: its folder (the defect class in an MVTec-style tree) and file.

Inspecting a line's archive (``test/good/011.png``, ``test/crack/011.png``) gives many files of the same name;
the folder tells them apart in the window's table, the records window and the PDF report.
"""

from __future__ import annotations

import os
from pathlib import PurePath


def folder_of(path: str | os.PathLike) -> str:
    """The name of the folder that holds the image ('' for a bare file name)."""
    return PurePath(path).parent.name


def shown_name(path: str | os.PathLike) -> str:
    """'crack/011.png': the folder and the file name, or just the file name when there is no folder."""
    path = PurePath(path)
    folder = path.parent.name
    return f"{folder}/{path.name}" if folder else path.name
