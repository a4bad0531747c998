"""Whether an image is shaped like the images a model learned: one rule for every path that inspects.

A model resizes whatever it is given to its input, so an image of another shape still gets a score, and a verdict
that means nothing: a camera switched to another resolution, a thumbnail, a crop of the wrong region. Such an image
is refused, with both shapes named, rather than judged. The rule looks at shape only: the same part seen by a
camera of twice the resolution is resized to the same input and stays welcome.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# An image's aspect (width / height) may lie this factor beyond the training images' range (JPEG crops and a
# camera's region of interest vary by a few pixels; a rotated or another camera's frame does not).
ASPECT_MARGIN = 1.25
# Its short side must be at least this share of the training images' smallest short side: below it the model sees
# an image blown up from a few pixels (an 8 x 8 thumbnail was judged NG at 1.98).
SMALLEST_SCALE = 0.5


def _size(height: int, width: int) -> str:
    return f"{width} x {height} px"


@dataclass(frozen=True)
class TrainedShapes:
    """The range of shapes of the images a model was fitted on: sides as (height, width)."""

    smallest: tuple[int, int]  # the image with the smallest short side
    aspect_low: float  # width / height, the narrowest
    aspect_high: float  # the widest
    example: tuple[int, int]  # one training image's shape, to name in a message

    @classmethod
    def of(cls, shapes: Iterable[tuple[int, int]]) -> TrainedShapes | None:
        """From the (height, width) of each training image; None without any."""
        shapes = [(int(h), int(w)) for h, w in shapes]
        if not shapes:
            return None
        aspects = [w / h for h, w in shapes]
        return cls(min(shapes, key=min), min(aspects), max(aspects), shapes[0])

    def to_dict(self) -> dict:
        return {"smallest": list(self.smallest), "aspect_low": self.aspect_low, "aspect_high": self.aspect_high,
                "example": list(self.example)}

    @classmethod
    def from_dict(cls, data: dict | None) -> TrainedShapes | None:
        """A manifest's entry; None for a model saved before shapes were recorded (nothing is refused then)."""
        if not data:
            return None
        return cls(tuple(data["smallest"]), float(data["aspect_low"]), float(data["aspect_high"]),
                   tuple(data["example"]))

    def describe(self) -> str:
        if self.aspect_high / self.aspect_low < 1.01:
            return _size(*self.example)
        return f"{_size(*self.example)} and others, aspect {self.aspect_low:.2f} to {self.aspect_high:.2f}"

    def problem(self, height: int, width: int) -> str | None:
        """Why an image of ``height`` x ``width`` is not one the model can judge; None when it is."""
        aspect = width / height
        if not self.aspect_low / ASPECT_MARGIN <= aspect <= self.aspect_high * ASPECT_MARGIN:
            return (f"{_size(height, width)} (aspect {aspect:.2f}) is shaped unlike the images the model learned "
                    f"({self.describe()}); check the camera's resolution or the image")
        if min(height, width) < SMALLEST_SCALE * min(self.smallest):
            return (f"{_size(height, width)} is far smaller than the images the model learned (the smallest: "
                    f"{_size(*self.smallest)}); check the camera's resolution or the image")
        return None
