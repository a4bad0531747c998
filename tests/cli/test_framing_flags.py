"""`anomalyapp train --roi / --smallest-defect / --tile-scale`: into the model's manifest, or one line on bad input."""

from __future__ import annotations

import json

import pytest

from cli_helpers import assert_clean_error, run_cli


def test_region_and_smallest_defect_reach_the_model(demo_line, tmp_path):
    out = tmp_path / "model"
    result = run_cli("train", demo_line, "--weights", "random", "--image-size", "32", "--out", out,
                     "--roi", "0,0,0.5,1", "--roi", "0.5,0.5,1,1", "--smallest-defect", "2")
    assert result.returncode == 0, result.stderr
    assert "region of interest: 2 rectangles" in result.stdout + result.stderr
    config = json.loads((out / "manifest.json").read_text())["config"]
    assert config["roi"] == [[0.0, 0.0, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0]]
    # The region's short side is 128 px, squeezed to 32: a 2 px defect would be half a pixel, so it is tiled.
    assert config["tile_scale"] == 1.0
    predicted = run_cli("predict", out, demo_line / "test" / "good")
    assert predicted.returncode == 0, predicted.stderr


@pytest.mark.parametrize("flags, fragment", [
    (["--roi", "0.5,0,0.2,1"], "LEFT < RIGHT"),
    (["--roi", "0,0,1"], "LEFT,TOP,RIGHT,BOTTOM"),
    (["--roi", "0,0,1,1.5"], "each from 0 to 1"),
    (["--smallest-defect", "-3"], "must be above 0"),
    (["--tile-scale", "0"], "must be above 0"),
    (["--tile-scale", "9"], "tile scale 9.0 must be above 0 and at most 4"),
])
def test_bad_region_or_tile_flags_are_one_line(demo_line, tmp_path, flags, fragment):
    assert_clean_error(run_cli("train", demo_line, "--weights", "random", "--out", tmp_path / "m", *flags), fragment)
