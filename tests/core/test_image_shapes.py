"""The rule that refuses an image shaped unlike the images a model learned."""

from __future__ import annotations

from anomalyapp.core.image_shapes import TrainedShapes


def test_a_line_of_one_shape_takes_its_own_shape_a_larger_camera_and_a_few_pixels_cropped():
    shapes = TrainedShapes.of([(1261, 500), (1270, 500), (1250, 498)])  # KolektorSDD's parts: tall
    assert shapes.problem(1264, 500) is None
    assert shapes.problem(2520, 1000) is None  # the same view at twice the resolution: resized alike
    assert shapes.problem(1200, 500) is None  # within the margin
    rotated = shapes.problem(500, 1261)
    assert rotated.startswith("1261 x 500 px (aspect 2.52) is shaped unlike the images the model learned (500 x 1261")
    assert "check the camera's resolution or the image" in rotated
    assert shapes.problem(640, 480) is not None  # another camera's 4:3 frame
    tiny = shapes.problem(40, 16)  # the right aspect, blown up from a thumbnail
    assert tiny.startswith("16 x 40 px is far smaller than the images the model learned (the smallest: 498 x 1250 px)")


def test_crops_of_varied_shapes_take_any_shape_within_their_range():
    shapes = TrainedShapes.of([(128, 320), (320, 128), (128, 128)])
    for height, width in ((100, 250), (250, 100), (200, 200), (150, 300)):
        assert shapes.problem(height, width) is None
    assert shapes.problem(100, 400) is not None  # 4:1, beyond 2.5:1 and its margin
    assert "aspect 0.40 to 2.50" in shapes.problem(400, 100)


def test_the_manifest_entry_round_trips_and_an_older_model_has_none():
    shapes = TrainedShapes.of([(128, 128), (130, 128)])
    assert TrainedShapes.from_dict(shapes.to_dict()) == shapes
    assert TrainedShapes.from_dict(None) is None and TrainedShapes.of([]) is None
