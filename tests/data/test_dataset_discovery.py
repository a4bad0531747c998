import numpy as np
import pytest

from anomalyapp.core.errors import DataError
from anomalyapp.data.datasets import LabelledImage, discover_dataset, has_pixel_truth, load_mask, pixel_truth
from anomalyapp.data.images import save_image


def write_images(folder, count, size=8):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        save_image(folder / f"{index:03d}.png", np.full((size, size, 3), index, np.uint8))


def test_mvtec_layout_from_the_demo(small_demo):
    dataset = discover_dataset(small_demo)
    assert dataset.layout == "mvtec" and dataset.root == small_demo
    assert len(dataset.train_good) == 5 and dataset.validation_good == []
    assert dataset.defect_types == ["scratch", "spot"]
    good = [item for item in dataset.test if not item.is_anomalous]
    bad = [item for item in dataset.test if item.is_anomalous]
    assert len(good) == 3 and all(item.defect_type == "good" and item.mask_path is None for item in good)
    assert len(bad) == 4 and all(item.mask_path.is_file() for item in bad)
    assert bad[0].mask_path == small_demo / "ground_truth" / bad[0].defect_type / f"{bad[0].path.stem}_mask.png"
    assert all(has_pixel_truth(item) for item in dataset.test)


def test_mvtec_tolerates_missing_masks_and_tests(tmp_path):
    write_images(tmp_path / "train" / "good", 3)
    assert discover_dataset(tmp_path).test == []
    (tmp_path / "test" / "crack").mkdir(parents=True)
    assert discover_dataset(tmp_path).test == []
    write_images(tmp_path / "test" / "crack", 2)
    item = discover_dataset(tmp_path).test[0]
    assert item == LabelledImage(tmp_path / "test" / "crack" / "000.png", True, "crack", None)
    assert not has_pixel_truth(item) and pixel_truth(item, (8, 8)) is None


@pytest.mark.parametrize("name", ["val", "validation"])
def test_validation_folder_is_found(tmp_path, name):
    write_images(tmp_path / "train" / "good", 3)
    write_images(tmp_path / name / "good", 2)
    assert [p.name for p in discover_dataset(tmp_path).validation_good] == ["000.png", "001.png"]


def test_plain_folder_of_good_images(tmp_path):
    write_images(tmp_path, 4)
    dataset = discover_dataset(str(tmp_path))
    assert dataset.layout == "folder" and dataset.root == tmp_path
    assert len(dataset.train_good) == 4 and dataset.validation_good == [] and dataset.test == []


def test_bad_folders_are_named_in_the_error(tmp_path):
    cases = {
        tmp_path / "missing": "does not exist",
        tmp_path / "file.png": "is not a folder",
        tmp_path / "empty": "no images",
        tmp_path / "no_train_images": "no images",
        tmp_path / "train_without_good": "no train/good folder",
    }
    (tmp_path / "file.png").touch()
    (tmp_path / "empty").mkdir()
    (tmp_path / "no_train_images" / "train" / "good").mkdir(parents=True)
    (tmp_path / "train_without_good" / "train" / "defect").mkdir(parents=True)
    for path, reason in cases.items():
        with pytest.raises(DataError, match=reason) as caught:
            discover_dataset(path)
        assert path.name in str(caught.value)


def test_load_mask_binarises_and_resizes_with_nearest_neighbour(tmp_path):
    mask = np.zeros((4, 4), np.uint8)
    mask[:2, :2] = 200
    mask[2:, 2:] = 100  # below half scale: not a defect
    save_image(tmp_path / "m_mask.png", mask)
    same = load_mask(tmp_path / "m_mask.png", (4, 4))
    assert same.dtype == bool and same.sum() == 4 and same[:2, :2].all()
    bigger = load_mask(tmp_path / "m_mask.png", (8, 8, 3))
    assert bigger.shape == (8, 8) and bigger.sum() == 16 and bigger[:4, :4].all()


def test_load_mask_accepts_rgb_and_16_bit(tmp_path):
    rgb = np.zeros((3, 3, 3), np.uint8)
    rgb[1, 1] = (255, 255, 255)
    save_image(tmp_path / "rgb.png", rgb)
    save_image(tmp_path / "deep.png", np.where(rgb[:, :, 0] > 0, 60000, 200).astype(np.uint16))
    for name in ("rgb.png", "deep.png"):
        assert np.argwhere(load_mask(tmp_path / name, (3, 3))).tolist() == [[1, 1]]


def test_pixel_truth_of_a_good_image_is_empty(small_demo):
    good = next(item for item in discover_dataset(small_demo).test if not item.is_anomalous)
    truth = pixel_truth(good, (96, 96, 3))
    assert truth.shape == (96, 96) and not truth.any()


def test_pixel_truth_of_a_defect_is_its_mask(small_demo):
    defect = next(item for item in discover_dataset(small_demo).test if item.is_anomalous)
    truth = pixel_truth(defect, (96, 96))
    assert truth.shape == (96, 96) and np.array_equal(truth, load_mask(defect.mask_path, (96, 96))) and truth.any()
