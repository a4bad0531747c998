import json

import numpy as np
import pytest

from anomalyapp.core.errors import DataError
from anomalyapp.data.datasets import discover_dataset
from anomalyapp.data.demo import DEFECT_KINDS, generate_demo, make_defect_image, make_good_image
from anomalyapp.data.images import load_image


def tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_good_images_are_deterministic_but_vary():
    first = make_good_image(np.random.default_rng(3), 128)
    assert first.shape == (128, 128, 3) and first.dtype == np.uint8
    assert np.array_equal(first, make_good_image(np.random.default_rng(3), 128))
    other = make_good_image(np.random.default_rng(4), 128)
    assert 0 < np.abs(first.astype(int) - other).mean() < 20  # same part, not the same picture


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_defect_is_deterministic(kind):
    image, mask = make_defect_image(np.random.default_rng(11), 128, kind)
    again, again_mask = make_defect_image(np.random.default_rng(11), 128, kind)
    assert image.tobytes() == again.tobytes() and mask.tobytes() == again_mask.tobytes()


@pytest.mark.parametrize("kind", DEFECT_KINDS)
@pytest.mark.parametrize("seed", range(8))
def test_defect_mask_is_small_and_covers_the_change(kind, seed):
    image, mask = make_defect_image(np.random.default_rng(seed), 256, kind)
    good = make_good_image(np.random.default_rng(seed), 256)  # the same washer before the defect
    assert mask.shape == (256, 256) and set(np.unique(mask)) == {0, 255}
    assert 0.003 <= np.count_nonzero(mask) / mask.size <= 0.03
    changed = (image != good).any(axis=2)
    assert not (changed & (mask == 0)).any()  # nothing changes outside the mask
    assert changed[mask > 0].mean() > 0.3  # and the mask is not much larger than the defect
    assert np.abs(image.astype(int) - good)[changed].mean() > 40  # visible


def test_unknown_defect_kind():
    with pytest.raises(ValueError, match="unknown defect kind"):
        make_defect_image(np.random.default_rng(0), 128, "dent")


def test_generate_demo_layout_and_determinism(tmp_path):
    kwargs = dict(seed=5, n_train=3, n_test_good=2, n_test_per_defect=2, size=64)
    first = generate_demo(tmp_path / "a" / "washers", **kwargs)
    second = generate_demo(tmp_path / "b" / "washers", **kwargs)
    assert tree_bytes(first) == tree_bytes(second)
    dataset = discover_dataset(first)
    assert len(dataset.train_good) == 3 and len(dataset.test) == 2 + 2 * len(DEFECT_KINDS)
    for item in dataset.test:
        image = load_image(item.path)
        assert image.pixels.shape == (64, 64, 3)
        if item.is_anomalous:
            mask = load_image(item.mask_path)
            assert mask.is_gray and mask.pixels.shape == (64, 64) and mask.pixels.max() == 255
    assert tree_bytes(generate_demo(tmp_path / "c", **{**kwargs, "seed": 6})) != tree_bytes(first)


def test_generate_demo_reuses_replaces_or_refuses(tmp_path):
    target = tmp_path / "washers"
    generate_demo(target, n_train=2, n_test_good=1, n_test_per_defect=1, size=64)
    stamp = (target / "train" / "good" / "000.png").stat().st_mtime_ns
    generate_demo(target, n_train=2, n_test_good=1, n_test_per_defect=1, size=64)
    assert (target / "train" / "good" / "000.png").stat().st_mtime_ns == stamp  # complete: not rewritten
    generate_demo(target, n_train=4, n_test_good=1, n_test_per_defect=1, size=64)
    assert len(discover_dataset(target).train_good) == 4  # our own demo with other settings: replaced
    assert [p.name for p in tmp_path.iterdir()] == ["washers"]  # no staging folders left behind
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("user data")
    with pytest.raises(DataError, match="not a demo dataset"):
        generate_demo(tmp_path / "mine")
    assert (tmp_path / "mine" / "keep.txt").read_text() == "user data"


def test_generate_demo_defaults_are_quick_enough(tmp_path):
    dataset = discover_dataset(generate_demo(tmp_path / "washers"))
    assert len(dataset.train_good) == 40 and len(dataset.test) == 12 + 12 * len(DEFECT_KINDS)


@pytest.mark.parametrize("kind", DEFECT_KINDS)
@pytest.mark.parametrize("seed", range(3))
def test_small_defects_are_a_few_pixels_whatever_the_size(kind, seed):
    """The high-resolution line (tools/make_highres_set.py): defects 4-10 px across on a large image."""
    import cv2

    from anomalyapp.data.demo import SMALL_DEFECT_PX

    image, mask = make_defect_image(np.random.default_rng(seed), 768, kind, small=True)
    good = make_good_image(np.random.default_rng(seed), 768)
    changed = (image != good).any(axis=2)
    assert changed.any() and not (changed & (mask == 0)).any()  # visible, and only inside the mask
    count, _, stats, _ = cv2.connectedComponentsWithStats((changed * 255).astype(np.uint8))
    low, high = SMALL_DEFECT_PX
    for width, height in stats[1:count, 2:4]:
        if kind == "spot":
            assert low - 1 <= max(width, height) <= high + 1  # a spot of 4-10 px, a pixel either way for the circle
        else:
            assert max(width, height) <= 4 * high + 4  # a short scratch, 2-3 px wide
    assert np.count_nonzero(mask) / mask.size < 0.002  # far smaller than the usual defects (0.4-2.5 %)


def test_small_defect_demo_is_its_own_set(tmp_path):
    kwargs = dict(seed=1, n_train=1, n_test_good=0, n_test_per_defect=1, size=256)
    plain = generate_demo(tmp_path / "plain", **kwargs)
    small = generate_demo(tmp_path / "small", small_defects=True, **kwargs)
    assert load_image(plain / "train" / "good" / "000.png").pixels.tobytes() == \
        load_image(small / "train" / "good" / "000.png").pixels.tobytes()  # the same parts
    assert np.count_nonzero(load_image(small / "ground_truth" / "spot" / "000_mask.png").pixels) < \
        np.count_nonzero(load_image(plain / "ground_truth" / "spot" / "000_mask.png").pixels)
    # Asking for small defects where plain ones are is a different demo: it is replaced, not reused.
    again = generate_demo(tmp_path / "plain", small_defects=True, **kwargs)
    assert json.loads((again / "demo.json").read_text())["small_defects"] is True
