"""PDF report thumbnails show the heat map of the model version that judged them, or say why not."""

from __future__ import annotations

import shutil
from datetime import datetime

import cv2
import numpy as np
import pytest

from anomalyapp.services import project as projects
from anomalyapp.services.records import InspectionRecord, RecordsService
from anomalyapp.services.reports import REPORT_THUMBNAIL_SIZE, _fit, _plain_image, build_report


@pytest.fixture
def project_root(tmp_path, demo_line, patchcore_model):
    """A project whose trained model judged the demo line's scratched parts (recorded as NG)."""
    project = projects.create_project(tmp_path / "project", "washers")
    shutil.copytree(patchcore_model, project.models_dir / "trained")
    with RecordsService(project.root) as records:
        boss = records.auth.create_first_supervisor("Maria", "Supervisor1")
        version = records.add_version("trained", None, "trained", boss)
        at = datetime.now().astimezone()
        records.store.record_inspections(
            InspectionRecord(str(path), 0.9, "NG", 0.5, at, model_version_id=version.id, user_id=boss.id)
            for path in sorted((demo_line / "test" / "scratch").glob("*.png")))
    return project.root


def _defect_mask(demo_line, image_path: str, shape) -> np.ndarray:
    from pathlib import Path

    name = Path(image_path)
    mask = cv2.imread(str(demo_line / "ground_truth" / name.parent.name / f"{name.stem}_mask.png"), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0


def _embedded(report) -> list[np.ndarray]:
    """The thumbnail pictures as the PDF renderer embeds them in its document."""
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QImage, QTextDocument

    from anomalyapp.render.pdf_report import _add_images, ensure_gui_application

    ensure_gui_application()
    doc = QTextDocument()
    _add_images(doc, report)
    out = []
    for index in range(len(report.thumbnails)):
        image = doc.resource(QTextDocument.ResourceType.ImageResource, QUrl(f"thumb://{index}"))
        image = image.convertToFormat(QImage.Format.Format_RGB888)
        rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
        out.append(rows[:, : 3 * image.width()].reshape(image.height(), image.width(), 3).copy())
    return out


def test_thumbnails_show_the_heat_map_where_the_defect_is(project_root, demo_line, qapp):
    with RecordsService(project_root) as records:
        report = build_report(records)
    assert report.thumbnails and all(t.overlay for t in report.thumbnails) and report.thumbnail_note == ""
    inside, outside = [], []
    for thumb, embedded in zip(report.thumbnails, _embedded(report), strict=True):
        record_path = next(r.image_path for r in report.rows if r.id == thumb.inspection_id)
        plain = _fit(_plain_image(record_path), REPORT_THUMBNAIL_SIZE)
        assert embedded.shape == plain.shape
        np.testing.assert_array_equal(embedded, thumb.pixels)  # the renderer embeds the heat-map thumbnail
        difference = np.abs(embedded.astype(int) - plain.astype(int)).sum(axis=2)
        defect = _defect_mask(demo_line, record_path, plain.shape)
        inside.append(difference[defect].mean())
        outside.append(difference[~defect].mean())
    # The map is drawn over the image, hottest over the defect (the small test model is warm elsewhere too).
    assert np.mean(inside) > 60 and np.mean(inside) > 1.3 * np.mean(outside)


def test_without_the_model_the_thumbnails_are_plain_and_the_report_says_why(project_root, qapp):
    from anomalyapp.render.pdf_report import render_pdf

    shutil.rmtree(project_root / "models" / "trained")
    with RecordsService(project_root) as records:
        report = build_report(records)
        plain = build_report(records, heat_maps=False)
    assert report.thumbnails and not any(t.overlay for t in report.thumbnails)
    assert "model v1 (trained) not available" in report.thumbnail_note
    assert f"({len(report.thumbnails)} images)" in report.thumbnail_note and plain.thumbnail_note == ""
    for thumb, plain_thumb in zip(report.thumbnails, plain.thumbnails, strict=True):
        np.testing.assert_array_equal(thumb.pixels, plain_thumb.pixels)
    assert render_pdf(report).startswith(b"%PDF")
