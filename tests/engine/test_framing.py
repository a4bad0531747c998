"""Region of interest and tiles (engine.framing): what the detector sees of each image, and the map put back."""

from __future__ import annotations

import numpy as np

from anomalyapp.core.config import PatchCoreConfig
from anomalyapp.core.types import drain
from anomalyapp.engine import anomaly_map
from anomalyapp.engine.detector import build_detector
from anomalyapp.engine.framing import Framing, choose_tile_scale, region_mask, tile_starts
from anomalyapp.engine.metrics import auroc
from anomalyapp.engine.weights import resolve_weights


def _fine_texture(seed: int, side: int = 512, defect: tuple[int, int] | None = None) -> np.ndarray:
    """A mottled surface; a defect is a dark spot ``DEFECT_PX`` pixels across at (row, column).

    Squeezed 8:1 (512 px to 64), the spot is a quarter of an input pixel, a dip smaller than the mottling.
    """
    import cv2

    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.normal(128, 12, (side // 32, side // 32)).astype(np.float32), (side, side),
                      interpolation=cv2.INTER_CUBIC)
    image = base + rng.normal(0, 4, (side, side))
    if defect is not None:
        row, column = defect
        image[row:row + DEFECT_PX, column:column + DEFECT_PX] -= 100
    return np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


DEFECT_PX = 4


def _defect_mask(side: int, defect: tuple[int, int]) -> np.ndarray:
    mask = np.zeros((side, side), bool)
    mask[defect[0]:defect[0] + DEFECT_PX, defect[1]:defect[1] + DEFECT_PX] = True
    return mask


def _fit(kind: str, config, images):
    detector, _ = build_detector(kind, config, resolve_weights(config.backbone), "cpu")
    drain(detector.fit(iter(images), len(images)))
    return detector


def test_tile_layout_covers_the_image_and_stitches_back():
    framing = Framing(PatchCoreConfig(image_size=64, tile_scale=0.5, tile_overlap=0.25))
    image = np.zeros((300, 500, 3), np.uint8)
    tiles, layout = framing.views(image)
    assert layout.scaled == (150, 250)
    assert all(tile.shape == (64, 64, 3) for tile in tiles)
    assert len(tiles) == len(tile_starts(150, 64, 0.25)) * len(tile_starts(250, 64, 0.25))
    assert tile_starts(150, 64, 0.25)[-1] == 150 - 64  # the last tile is flush with the edge
    stitched = framing.stitch([np.full((64, 64), 2.0, np.float32) for _ in tiles], layout)
    assert stitched.shape == (150, 250) and np.allclose(stitched, 2.0)  # overlaps averaged, nothing left out


def test_automatic_tiling_from_the_smallest_defect():
    # 2048 px squeezed to 224: a 6 px defect becomes 0.66 px, so tile at the scale that keeps it 3 px.
    assert choose_tile_scale(2048, 2448, 224, 6) == 0.5
    assert choose_tile_scale(2048, 2448, 224, 40) is None  # 4.4 px squeezed: today's path is enough
    assert choose_tile_scale(2048, 2448, 224, None) is None
    assert choose_tile_scale(2048, 2048, 224, 2) == 1.0  # never above the image's own pixels
    # A small region is squeezed less: the same defect stays visible without tiles.
    assert choose_tile_scale(2048, 2048, 224, 6, roi=((0.4, 0.4, 0.6, 0.6),)) is None


def test_region_mask_is_the_union_of_rectangles():
    mask = region_mask(100, 200, ((0.0, 0.0, 0.25, 0.5), (0.5, 0.5, 1.0, 1.0)))
    assert mask[:50, :50].all() and mask[50:, 100:].all()
    assert not mask[:50, 50:].any() and not mask[50:, :100].any()


def test_tiling_finds_a_small_defect_the_squeezed_model_misses():
    kind, config_class, extra = "patchcore", PatchCoreConfig, {}
    train = [_fine_texture(i) for i in range(6)]
    places = [(100, 300), (380, 60), (250, 250), (60, 420)]
    good = [_fine_texture(100 + i) for i in range(4)]
    defective = [_fine_texture(200 + i, defect=place) for i, place in enumerate(places)]
    labels = [0] * len(good) + [1] * len(defective)
    results = {}
    for name, config in {
        "squeezed": config_class(image_size=64, **extra),
        # Half the image's pixels (256 px): 5 x 5 overlapping tiles of 64 px, the spot 2 px across.
        "tiled": config_class(image_size=64, tile_scale=0.5, **extra),
    }.items():
        detector = _fit(kind, config, train)
        scores, maps = [], []
        for image in good + defective:
            score, (model_map,) = detector.raw_predict([image])
            scores.append(float(score[0]))
            maps.append(anomaly_map.to_image_size(model_map, 512, 512))
        masks = [np.zeros((512, 512), bool)] * len(good) + [_defect_mask(512, place) for place in places]
        step = 4  # every 4th pixel of each row and column: the defects' pixels are kept whole below
        pixel_labels = np.concatenate([m[::step, ::step].ravel() for m in masks] + [m[m] for m in masks])
        pixel_scores = np.concatenate([s[::step, ::step].ravel() for s in maps] + [s[m] for s, m in zip(maps, masks)])
        results[name] = (auroc(labels, scores), auroc(pixel_labels.astype(int), pixel_scores))
    assert results["tiled"][0] == 1.0, results  # every defective part above every good one
    assert results["tiled"][0] > results["squeezed"][0] + 0.2, results
    assert results["tiled"][1] > 0.95 and results["tiled"][1] > results["squeezed"][1] + 0.1, results


def test_region_of_interest_leaves_out_a_defect_outside_it():
    """A dark blob outside the region changes neither the score nor the map; inside it is found."""
    roi = ((0.0, 0.0, 0.5, 1.0),)  # the left half
    train = [_fine_texture(i, side=128) for i in range(6)]
    good = [_fine_texture(100 + i, side=128) for i in range(3)]

    def blob(image, row, column):
        image = image.copy()
        image[row:row + 16, column:column + 16] = 20
        return image

    outside = [blob(_fine_texture(300 + i, side=128), 40 + 10 * i, 90) for i in range(3)]
    inside = [blob(_fine_texture(400 + i, side=128), 40 + 10 * i, 20) for i in range(3)]
    plain = _fit("patchcore", PatchCoreConfig(image_size=64), train)
    framed = _fit("patchcore", PatchCoreConfig(image_size=64, roi=roi), train)

    def scores(detector, images):
        return [float(detector.raw_predict([image])[0][0]) for image in images]

    assert min(scores(plain, outside)) > max(scores(plain, good))  # without the region, it is a defect
    assert max(scores(framed, outside)) <= max(scores(framed, good)) * 1.05  # with it, nothing is there
    assert min(scores(framed, inside)) > 1.5 * max(scores(framed, good))  # inside, it still is
    # The outside pixels do not reach the model at all: the same image with the outside changed scores the same.
    assert np.isclose(scores(framed, [outside[0]])[0], scores(framed, [_fine_texture(300, side=128)])[0], rtol=1e-5)
    _, (model_map,) = framed.raw_predict([outside[0]])
    full = anomaly_map.to_image_size(model_map, 128, 128)
    assert full.shape == (128, 128) and np.all(full[:, 66:] == 0)  # zero outside the region
