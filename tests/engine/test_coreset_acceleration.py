"""The accelerated greedy coreset and coverage-radius search against straightforward implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomalyapp.core.types import drain
from anomalyapp.engine.memory_bank import MemoryBank
from anomalyapp.engine.sampling import greedy_coreset, random_projection


def textbook_coreset(features: torch.Tensor, count: int, seed: int, projection_dim: int):
    """k-center greedy as the paper states it: every step updates every row, then takes the farthest."""
    reduced = random_projection(features.float(), projection_dim, seed)
    generator = torch.Generator().manual_seed(seed)
    chosen = [int(torch.randint(features.shape[0], (1,), generator=generator))]
    nearest = torch.full((features.shape[0],), float("inf"))
    for step in range(count):
        nearest = torch.minimum(nearest, ((reduced - reduced[chosen[-1]]) ** 2).sum(1))
        if step + 1 < count:
            chosen.append(int(torch.argmax(nearest)))
    return torch.tensor(chosen), float(nearest.max().sqrt()), reduced


def clustered_rows(rows: int, dim: int, seed: int) -> torch.Tensor:
    """Clusters of different sizes and spreads, like patches of a few part regions and a plain background."""
    generator = torch.Generator().manual_seed(seed)
    centres = 6 * torch.randn(25, dim, generator=generator)
    cluster = torch.randint(25, (rows,), generator=generator)
    spread = 0.2 + torch.rand(25, generator=generator)
    return centres[cluster] + spread[cluster, None] * torch.randn(rows, dim, generator=generator)


@pytest.mark.parametrize("block_rows", [16, 128, 512])
def test_accelerated_coreset_makes_the_textbook_picks(block_rows):
    features = clustered_rows(4000, 48, seed=3)
    result = drain(greedy_coreset(features, 600, seed=2, projection_dim=24, block_rows=block_rows))
    picks, radius, reduced = textbook_coreset(features, 600, seed=2, projection_dim=24)
    assert (result.indices == picks).float().mean() >= 0.99  # float rounding may swap a near tie
    assert result.radius == pytest.approx(radius, rel=1e-4)
    # Each row's assignment is a pick within the coverage radius: an upper bound on its distance to the
    # bank, which the coverage-radius search relies on (rows of blocks the lazy loop left alone keep an
    # older, farther pick).
    to_picks = torch.cdist(reduced, reduced[result.indices])
    assigned = to_picks.gather(1, result.assignment[:, None])[:, 0]
    assert bool((assigned >= to_picks.min(1).values - 1e-3).all())
    assert float(assigned.max()) <= radius * (1 + 1e-4) + 1e-3


def test_a_coreset_of_scaled_columns_picks_as_the_coreset_of_a_scaled_copy_does():
    """The mixed rule's second coreset scales the columns inside the projection instead of copying the table."""
    features = clustered_rows(3000, 48, seed=6)
    scale = torch.linspace(0.3, 2.0, 48)
    folded = drain(greedy_coreset(features, 400, seed=1, projection_dim=24, column_scale=scale))
    copied = drain(greedy_coreset(features * scale, 400, seed=1, projection_dim=24))
    assert (folded.indices == copied.indices).float().mean() >= 0.99  # float rounding may swap a near tie
    assert folded.radius == pytest.approx(copied.radius, rel=1e-4)
    unscaled = drain(greedy_coreset(features, 400, seed=1, projection_dim=24))
    assert (unscaled.indices == copied.indices).float().mean() < 0.5  # the scale does change which rows are picked
    small = clustered_rows(200, 8, seed=7)  # narrower than the projection: the table itself is scaled
    assert torch.allclose(random_projection(small, 24, 0, torch.full((8,), 2.0)), small * 2.0)


def test_accelerated_coreset_covers_rows_of_a_table_that_does_not_fill_its_blocks():
    features = clustered_rows(1001, 20, seed=4)  # 1001 = 7 full blocks of 128 and a padded one
    result = drain(greedy_coreset(features, 1001, seed=0, projection_dim=20))
    assert sorted(result.indices.tolist()) == list(range(1001))  # every row once, none twice
    assert result.radius < 0.05  # zero but for the rounding of squared distances expanded as |x|^2 - 2x.c + |c|^2


def test_coverage_radius_from_bounds_equals_the_full_search():
    rng = np.random.default_rng(5)
    bank_vectors = rng.standard_normal((500, 32)).astype(np.float32)
    queries = torch.from_numpy(rng.standard_normal((20000, 32)).astype(np.float32))
    bank = MemoryBank.build(bank_vectors, "flat")
    full = float(bank.nearest_distances(queries).max())
    # Any bank vector's distance is an upper bound; the coreset's assignment gives the tightest ones.
    some_vector = torch.from_numpy(bank_vectors)[torch.from_numpy(rng.integers(0, 500, 20000))]
    bounds = torch.linalg.vector_norm(queries - some_vector, dim=1)
    assert bank.largest_nearest_distance(queries, bounds) == pytest.approx(full, rel=1e-5)
    tight = bank.nearest_distances(queries) * 1.0001
    assert bank.largest_nearest_distance(queries, tight) == pytest.approx(full, rel=1e-5)


def test_the_estimate_counts_the_accelerated_coreset_and_the_peak_memory():
    import resource

    from anomalyapp.core.config import PatchCoreConfig
    from anomalyapp.engine.detector import build_detector
    from anomalyapp.engine.sampling import coreset_seconds
    from anomalyapp.engine.weights import resolve_weights

    config = PatchCoreConfig(image_size=64)
    detector, _ = build_detector("patchcore", config, resolve_weights(config.backbone), "cpu")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    small, large = detector.training_cost(images, 10), detector.training_cost(images, 1000)
    assert large.bank_size == 6400  # 64 patches per image, 10 %
    # The peak is this process's (network, libraries) plus the tables: never below what it already holds,
    # and growing with the patch table (here 64,000 patches of 152 floats and their coreset tables).
    held = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    assert small.memory_mb >= held * 0.99
    assert large.memory_mb - small.memory_mb > 64000 * 152 * 4 / 2**20
    # The coreset's part grows with the picks (the textbook loop's cost grew with picks times rows).
    assert coreset_seconds(64000, 6400) > coreset_seconds(64000, 64)
    assert 0 <= coreset_seconds(100, 3) < 1  # fewer picks than the timing's visits
    # A tiled set of millions of patches is estimated in about a second, without allocating its table.
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert coreset_seconds(3_000_000, 30_000) > coreset_seconds(300_000, 30_000) * 0.5
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 400
