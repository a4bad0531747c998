"""The mixed stage weighting (issue 14, item 3): one bank of concatenated vectors; the image score from the
concatenated distance, the anomaly map from the balanced one, in predict and in the leave-one-out calibration."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from anomalyapp.core.config import AutoencoderConfig, PatchCoreConfig
from anomalyapp.core.errors import DataError
from anomalyapp.core.types import drain
from anomalyapp.engine.bundle import MANIFEST, load_model
from anomalyapp.engine.memory_bank import MemoryBank
from anomalyapp.engine.patchcore import PatchCoreDetector
from anomalyapp.engine.stage_split_search import StageSplitSearch

MIXED = "score_concatenated_map_balanced"
EXACT = "donot_use_mm_for_euclid_dist"  # cdist's direct form, the reference


def _clustered(generator: torch.Generator, count: int, dim: int, centres: torch.Tensor) -> torch.Tensor:
    """Patch-like vectors: clusters of spread 0.3 around centres, so that nearest neighbours are not ties."""
    picks = torch.randint(0, centres.shape[0], (count,), generator=generator)
    return centres[picks] + 0.3 * torch.randn(count, dim, generator=generator)


@pytest.mark.parametrize("rows_per_image", [1, 7, 196])
def test_split_search_equals_plain_searches_on_the_unweighted_and_the_weighted_vectors(rows_per_image):
    generator = torch.Generator().manual_seed(3)
    dim = 40 + 112
    centres = 2.0 * torch.randn(50, dim, generator=generator)
    bank = _clustered(generator, 900, dim, centres)
    queries = _clustered(generator, 4 * 196, dim, centres)
    queries[5] += 3.0  # a few patches far from everything, as on a defect
    queries[400] += 2.0 * torch.randn(dim, generator=generator)
    column_weights = torch.cat([torch.full((40,), 1.9), torch.full((112,), 0.68)])
    search = StageSplitSearch(bank, column_weights)

    scale = column_weights.sqrt()
    concatenated = torch.cdist(queries, bank, compute_mode=EXACT).min(dim=1).values
    weighted = torch.cdist(queries * scale, bank * scale, compute_mode=EXACT).min(dim=1).values

    map_distances, tops = search.search(queries, rows_per_image)
    assert map_distances.numpy() == pytest.approx(weighted.numpy(), rel=1e-4, abs=1e-4)
    # Each image's top row holds its largest concatenated nearest distance.
    per_image = concatenated.reshape(-1, rows_per_image)
    expected_max = per_image.max(dim=1).values
    assert tops.shape == (per_image.shape[0],)
    assert [int(top) // rows_per_image for top in tops] == list(range(per_image.shape[0]))
    assert concatenated[tops].numpy() == pytest.approx(expected_max.numpy(), rel=1e-5)


@pytest.mark.parametrize("rows_per_image", [3, 40])
def test_leave_out_search_equals_plain_searches_with_each_images_own_bank_vectors_masked(rows_per_image):
    """The calibration's search: the bank is built from the queried images' own patches, and each image is
    searched without the bank vectors it contributed, under both distances."""
    generator = torch.Generator().manual_seed(5)
    dim = 40 + 112
    centres = 2.0 * torch.randn(30, dim, generator=generator)
    images = 7
    queries = _clustered(generator, images * rows_per_image, dim, centres)
    queries[rows_per_image + 1] += 3.0  # a patch far from everything, as on a good part's odd spot
    owners_of_rows = torch.arange(images).repeat_interleave(rows_per_image)
    picked = torch.randperm(queries.shape[0], generator=generator)[: queries.shape[0] // 3]
    bank, owners = queries[picked], owners_of_rows[picked]
    column_weights = torch.cat([torch.full((40,), 1.9), torch.full((112,), 0.68)])
    search = StageSplitSearch(bank, column_weights)
    bounds = [image * rows_per_image for image in range(images + 1)]
    excluded = [torch.nonzero(owners == image).flatten() for image in range(images)]

    scale = column_weights.sqrt()
    own = owners_of_rows[:, None] == owners[None, :]
    concatenated = torch.cdist(queries, bank, compute_mode=EXACT).masked_fill(own, float("inf"))
    weighted = torch.cdist(queries * scale, bank * scale, compute_mode=EXACT).masked_fill(own, float("inf"))
    # Not vacuous: without the mask, the patches that are in the bank would be at distance 0.
    assert float(torch.cdist(queries, bank).min(dim=1).values.min()) < 1e-3 < float(concatenated.min())

    map_distances, tops = search.leave_out_search(queries, bounds, excluded)
    assert map_distances.numpy() == pytest.approx(weighted.min(dim=1).values.numpy(), rel=1e-4, abs=1e-4)
    nearest_concatenated = concatenated.min(dim=1)
    for image, (row, squared, index) in enumerate(tops):
        rows = slice(bounds[image], bounds[image + 1])
        assert bounds[image] <= row < bounds[image + 1]
        assert squared ** 0.5 == pytest.approx(float(nearest_concatenated.values[rows].max()), rel=1e-5)
        assert index == int(nearest_concatenated.indices[row])
        assert int(owners[index]) != image


def test_the_mixed_rule_is_offered_to_both_detectors_and_an_unknown_one_to_neither():
    assert PatchCoreConfig(stage_weighting=MIXED).problem() is None
    assert AutoencoderConfig(stage_weighting=MIXED).problem() is None
    for config in (PatchCoreConfig(stage_weighting="loudest"), AutoencoderConfig(stage_weighting="loudest")):
        problem = config.problem()
        assert problem is not None and "loudest" in problem and "\n" not in problem


def test_an_old_manifest_without_the_field_loads_as_concatenated(tmp_path, demo_line):
    from tests.engine.test_stage_weighting import _without_stage_weighting, train_model

    model = train_model(demo_line, tmp_path / "concatenated", stage_weighting="concatenated")
    old = _without_stage_weighting(model, tmp_path / "old")
    detector, _ = load_model(old)
    assert detector.config.stage_weighting == "concatenated"
    assert detector.model.map_column_weights is None


@pytest.fixture(scope="module")
def mixed_model(demo_line, tmp_path_factory) -> Path:
    """Trained through the CLI flag, as a user would."""
    from anomalyapp.cli.main import main

    out = tmp_path_factory.mktemp("mixed") / "model"
    code = main(["train", str(demo_line), "--out", str(out), "--image-size", "128", "--device", "cpu",
                 "--stage-weighting", MIXED])
    assert code == 0
    return out


def _images(folder: Path) -> list[np.ndarray]:
    from anomalyapp.data.images import load_image

    return [load_image(path).to_rgb() for path in sorted(folder.rglob("*.png"))]


def test_the_mixed_rule_scores_like_concatenated_and_maps_like_balanced_on_the_same_bank(mixed_model, demo_line):
    manifest = json.loads((mixed_model / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["config"]["stage_weighting"] == MIXED
    mixed, _ = load_model(mixed_model)
    extractor = mixed.extractor
    scale = mixed.model.map_column_weights.sqrt()

    concatenated = PatchCoreDetector(replace(mixed.config, stage_weighting="concatenated"), extractor)
    concatenated.bank = mixed.bank
    balanced = PatchCoreDetector(replace(mixed.config, stage_weighting="balanced"), extractor)
    # The balanced model's bank: the same vectors, each stage scaled as the balanced embedding scales it.
    balanced.bank = MemoryBank.build((torch.from_numpy(mixed.bank.vectors()) * scale).numpy(), "flat")

    images = _images(demo_line / "test")
    mixed_scores, mixed_maps = mixed.raw_predict(images)
    concatenated_scores, concatenated_maps = concatenated.raw_predict(images)
    balanced_scores, balanced_maps = balanced.raw_predict(images)
    assert mixed_scores == pytest.approx(concatenated_scores, rel=1e-4)
    for mixed_map, balanced_map in zip(mixed_maps, balanced_maps):
        assert mixed_map == pytest.approx(balanced_map, rel=1e-3, abs=1e-3 * float(balanced_map.max()))
    # Not vacuous: the two weightings differ in both.
    assert max(abs(a - b) / b for a, b in zip(mixed_scores, balanced_scores)) > 1e-2
    assert max(float(np.abs(a - b).max() / b.max()) for a, b in zip(mixed_maps, concatenated_maps)) > 1e-2


def test_a_bank_searched_by_clusters_scores_and_maps_as_the_split_search_does(mixed_model, demo_line):
    """Large banks are searched by clusters: the map then comes from a second, reweighted bank searched the same
    way, and the score from the bank's own search. Both give what the split search gives on a small bank."""
    by_product, _ = load_model(mixed_model)
    by_clusters, _ = load_model(mixed_model)
    by_clusters.bank.pruned_search_from = 1  # as a bank of 8,192 vectors or more is searched
    assert (by_product.bank.search, by_clusters.bank.search) == ("product", "pruned")

    images = _images(demo_line / "test")
    product_scores, product_maps = by_product.raw_predict(images)
    cluster_scores, cluster_maps = by_clusters.raw_predict(images)
    assert by_clusters._map_bank is not None and by_clusters._map_bank[2].search == "pruned"
    assert by_product._map_bank is None
    assert cluster_scores == pytest.approx(product_scores, rel=1e-4)
    for cluster_map, product_map in zip(cluster_maps, product_maps):
        assert cluster_map == pytest.approx(product_map, rel=1e-3, abs=1e-3 * float(product_map.max()))


def test_leave_one_out_calibration_follows_the_same_rule(mixed_model, demo_line):
    from anomalyapp.core.config import CalibrationConfig
    from anomalyapp.data.datasets import discover_dataset
    from anomalyapp.services.training import split_holdout

    loaded, _ = load_model(mixed_model)
    fit_paths, _ = split_holdout(discover_dataset(demo_line).train_good, CalibrationConfig())
    from anomalyapp.data.images import load_image

    images = [load_image(path).to_rgb() for path in fit_paths]
    mixed = PatchCoreDetector(loaded.config, loaded.extractor)
    drain(mixed.fit(images, len(images)))
    scale = mixed.model.map_column_weights.sqrt()
    patches, grids = mixed._fit_patches

    concatenated = PatchCoreDetector(replace(mixed.config, stage_weighting="concatenated"), loaded.extractor)
    concatenated.bank, concatenated._bank_owners = mixed.bank, mixed._bank_owners
    concatenated._fit_patches = (patches, grids)
    balanced = PatchCoreDetector(replace(mixed.config, stage_weighting="balanced"), loaded.extractor)
    balanced.bank = MemoryBank.build((torch.from_numpy(mixed.bank.vectors()) * scale).numpy(), "flat")
    balanced._bank_owners, balanced._fit_patches = mixed._bank_owners, (patches * scale, grids)

    mixed_scores, mixed_maxima = drain(mixed.unseen_scores(None, len(images)))
    concatenated_scores, concatenated_maxima = drain(concatenated.unseen_scores(None, len(images)))
    balanced_scores, balanced_maxima = drain(balanced.unseen_scores(None, len(images)))
    assert mixed_scores == pytest.approx(concatenated_scores, rel=1e-4)
    assert mixed_maxima == pytest.approx(balanced_maxima, rel=1e-3)
    assert mixed_maxima != pytest.approx(concatenated_maxima, rel=1e-3)


def test_the_stage_weighting_flag_refuses_an_unknown_value_in_one_line(demo_line, tmp_path, capsys):
    from anomalyapp.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(demo_line), "--out", str(tmp_path / "never"), "--stage-weighting", "loudest"])
    assert exit_info.value.code == 2
    assert "--stage-weighting" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
    from anomalyapp.services.training import TrainRequest, build_config

    with pytest.raises(DataError, match="stage weighting 'loudest'"):
        build_config(TrainRequest(data=demo_line, detector="autoencoder", stage_weighting="loudest"))


def test_the_autoencoders_mixed_rule_scores_as_concatenated_and_maps_as_balanced(autoencoder_model, demo_line):
    """The autoencoder learns the same network whatever the weighting (its loss is unweighted): the rule only
    weighs the reconstruction error, one way for the image score and another for the map."""
    from anomalyapp.data.images import load_image
    from anomalyapp.engine.autoencoder import AutoencoderDetector

    trained, _ = load_model(autoencoder_model)
    assert trained.config.stage_weighting == AutoencoderConfig().stage_weighting

    def weighted(weighting: str) -> AutoencoderDetector:
        detector = AutoencoderDetector(replace(trained.config, stage_weighting=weighting), trained.extractor)
        detector.autoencoder, detector.feature_mean, detector.feature_std = (
            trained.autoencoder, trained.feature_mean, trained.feature_std)
        return detector

    images = [load_image(path).to_rgb() for path in sorted((demo_line / "test" / "scratch").iterdir())[:2]]
    mixed_scores, mixed_maps = weighted(MIXED).raw_predict(images)
    concatenated_scores, concatenated_maps = weighted("concatenated").raw_predict(images)
    balanced_scores, balanced_maps = weighted("balanced").raw_predict(images)
    np.testing.assert_allclose(mixed_scores, concatenated_scores, rtol=1e-6)
    for mixed, balanced, concatenated in zip(mixed_maps, balanced_maps, concatenated_maps):
        np.testing.assert_allclose(mixed, balanced, rtol=1e-6)
        assert not np.allclose(mixed, concatenated, rtol=1e-3)


def test_the_mixed_rules_bank_covers_the_score_and_the_map_distance_half_each(demo_line):
    """Half the picks are the coreset on the concatenated vectors, the other half the coreset on the balanced
    ones; the bank is their union (at most the ratio's count, never less than the first half)."""
    from anomalyapp.data.datasets import discover_dataset
    from anomalyapp.data.images import load_image
    from anomalyapp.engine.detector import build_detector
    from anomalyapp.engine.sampling import greedy_coreset
    from anomalyapp.engine.weights import resolve_weights

    config = PatchCoreConfig(image_size=96, stage_weighting=MIXED)
    detector, _ = build_detector("patchcore", config, resolve_weights(config.backbone), "cpu")
    images = [load_image(p).to_rgb() for p in discover_dataset(demo_line).train_good]
    drain(detector.fit(iter(images), len(images)))
    patches, _ = detector._fit_patches
    count = detector.bank_size_for(patches.shape[0])
    half = count // 2
    by_score = drain(greedy_coreset(patches, count - half, seed=config.seed,
                                    projection_dim=config.coreset_projection_dim))
    by_map = drain(greedy_coreset(patches, half, seed=config.seed, projection_dim=config.coreset_projection_dim,
                                  column_scale=detector.model.map_column_weights.sqrt()))
    expected = set(by_score.indices.tolist()) | set(by_map.indices.tolist())
    assert count - half <= detector.bank.size == len(expected) <= count
    bank = torch.from_numpy(detector.bank.vectors())
    assert torch.equal(bank[: count - half], patches[by_score.indices])  # the score's picks first, in order
    in_bank = {tuple(row) for row in bank.numpy().round(6).tolist()}
    assert all(tuple(row) in in_bank for row in patches[by_map.indices].numpy().round(6).tolist())
    # Every training patch still lies within the stated coverage radius of the bank.
    assert float(detector.bank.nearest_distances(patches).max()) <= detector.coverage_radius + 1e-4
