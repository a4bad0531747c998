"""Finding the images of a dataset on disk.

Two layouts are understood. MVTec AD (``train/good``, ``test/<defect type>``, ``ground_truth/<defect
type>/<stem>_mask.png``, optionally ``val/good`` or ``validation/good``) and a plain folder of good images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from anomalyapp.core.errors import DataError
from anomalyapp.data.images import images_in, list_images, load_image

GOOD = "good"
_VALIDATION_FOLDERS = ("val", "validation")


@dataclass(frozen=True)
class LabelledImage:
    """A test image with its truth; ``mask_path`` is None for good images and for defects drawn without a mask."""

    path: Path
    is_anomalous: bool
    defect_type: str
    mask_path: Path | None


@dataclass(frozen=True)
class Dataset:
    """``layout`` is "mvtec" or "folder"; a plain folder has only ``train_good``."""

    root: Path
    layout: str
    train_good: list[Path]
    validation_good: list[Path]
    test: list[LabelledImage]

    @property
    def defect_types(self) -> list[str]:
        return sorted({item.defect_type for item in self.test if item.is_anomalous})


def discover_dataset(path: str | os.PathLike) -> Dataset:
    """Read the layout of ``path``: MVTec when it has ``train/good``, otherwise a folder of good images."""
    root = Path(path)
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder")
    if (root / "train" / GOOD).is_dir():
        return _discover_mvtec(root)
    if (root / "train").is_dir() and not images_in(root):
        raise DataError(f"{root} has a train folder but no train/{GOOD} folder (expected the MVTec layout)")
    return Dataset(root, "folder", list_images(root), [], [])


def has_pixel_truth(item: LabelledImage) -> bool:
    """Whether pixel metrics can use this image: good images are all-normal, defects need a mask file."""
    return not item.is_anomalous or item.mask_path is not None


def pixel_truth(item: LabelledImage, shape: tuple[int, ...]) -> np.ndarray | None:
    """The boolean defect mask at ``shape[:2]``; all False for a good image, None when there is no annotation."""
    if not item.is_anomalous:
        return np.zeros(shape[:2], bool)
    return None if item.mask_path is None else load_mask(item.mask_path, shape)


def load_mask(path: str | os.PathLike, shape: tuple[int, ...]) -> np.ndarray:
    """A boolean mask (pixels above half scale) at ``shape[:2]``, resized with nearest neighbour if needed."""
    height, width = shape[:2]
    mask = load_image(path).to_rgb_float().max(axis=2) > 0.5
    if mask.shape != (height, width):
        mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    return mask


def _discover_mvtec(root: Path) -> Dataset:
    train_good = list_images(root / "train" / GOOD)
    validation_good = next(
        (images_in(root / name / GOOD) for name in _VALIDATION_FOLDERS if (root / name / GOOD).is_dir()), []
    )
    test = []
    test_root = root / "test"
    type_folders = sorted(p for p in test_root.iterdir() if p.is_dir()) if test_root.is_dir() else []
    for folder in (f for f in type_folders if not f.name.startswith(".")):
        is_anomalous = folder.name != GOOD
        for image in images_in(folder):
            mask = root / "ground_truth" / folder.name / f"{image.stem}_mask.png"
            mask_path = mask if is_anomalous and mask.is_file() else None
            test.append(LabelledImage(image, is_anomalous, folder.name, mask_path))
    return Dataset(root, "mvtec", train_good, validation_good, test)
