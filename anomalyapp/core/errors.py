"""The application's error hierarchy.

Every error a user can cause (a bad file, a wrong folder, a damaged model) is an ``AppError``: the front
ends print its message as one line (CLI, exit code 2) or show it in a dialog (GUI), never a traceback.
Anything else is a bug and surfaces as such.
"""

from __future__ import annotations


class AppError(Exception):
    """An expected failure caused by input; its message names the thing and the reason."""


class DataError(AppError):
    """A folder or dataset that cannot be used (missing, empty, wrong layout)."""


class ImageReadError(AppError):
    """One image file that cannot be read."""

    MESSAGE = "cannot read image {path}: {reason}"

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(self.MESSAGE.format(path=self.path, reason=reason))


class ImageRefused(ImageReadError):
    """An image that was read but is not one the model can judge (``core.image_shapes``): not inspected, like an
    unreadable one; the reason says why ("skipped <path>: <reason>" where the front ends list what they skip)."""

    MESSAGE = "{path}: {reason}"


class WeightsError(AppError):
    """Backbone weights that are missing, unreadable or do not fit the network."""


class ModelFileError(AppError):
    """A saved model that is missing, damaged, foreign or from a newer version."""


class ModelNotFitted(AppError):
    """A detector used before it was fitted."""


class CameraError(AppError):
    """A camera or stream that cannot be opened or has gone away."""


class StoreError(AppError):
    """The project database cannot be opened or written."""
