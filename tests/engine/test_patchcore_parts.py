"""Coreset, memory bank and calibration: the parts PatchCore is built from."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from anomalyapp.core.cancel import Cancelled, CancelToken
from anomalyapp.core.types import drain
from anomalyapp.engine.calibration import calibrate, threshold_from_good
from anomalyapp.engine.memory_bank import MemoryBank
from anomalyapp.engine.sampling import greedy_coreset


def test_greedy_coreset_covers_clusters_and_reports_radius():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    points = torch.cat([c + 0.1 * torch.randn(50, 2, generator=generator) for c in centres])
    result = drain(greedy_coreset(points, 4, seed=0))
    chosen = points[result.indices]
    # one centre from each cluster: k-center greedy always jumps to the farthest cluster next
    assert sorted({int(torch.cdist(c[None], centres).argmin()) for c in chosen}) == [0, 1, 2, 3]
    true_radius = torch.cdist(points, chosen).min(1).values.max()
    assert result.radius == pytest.approx(float(true_radius), rel=1e-4)
    assert result.radius < 1.0


def test_greedy_coreset_is_seeded_and_cancellable():
    points = torch.randn(2000, 64, generator=torch.Generator().manual_seed(1))
    a = drain(greedy_coreset(points, 300, seed=5, projection_dim=16))
    b = drain(greedy_coreset(points, 300, seed=5, projection_dim=16))
    assert torch.equal(a.indices, b.indices)
    token = CancelToken()
    job = greedy_coreset(points, 300, seed=5, cancel=token, report_every=10)
    next(job)
    token.cancel()
    with pytest.raises(Cancelled):
        drain(job)


def test_exact_search_matches_faiss_flat_search():
    rng = np.random.default_rng(2)
    bank_vectors = rng.standard_normal((3000, 40)).astype(np.float32)
    queries = rng.standard_normal((500, 40)).astype(np.float32)
    bank = MemoryBank.build(bank_vectors, "flat")
    distances, indices = bank.nearest(torch.from_numpy(queries))
    reference = faiss.IndexFlatL2(40)
    reference.add(bank_vectors)
    ref_distances, ref_indices = reference.search(queries, 1)
    assert (indices.numpy() == ref_indices[:, 0]).mean() > 0.999  # exact ties aside
    np.testing.assert_allclose(distances.numpy() ** 2, ref_distances[:, 0], rtol=1e-4, atol=1e-3)


def test_distance_only_search_agrees_with_the_full_search_across_blocks(monkeypatch):
    import anomalyapp.engine.memory_bank as memory_bank

    rng = np.random.default_rng(4)
    bank = MemoryBank.build(rng.standard_normal((700, 24)).astype(np.float32), "flat")
    queries = torch.from_numpy(rng.standard_normal((333, 24)).astype(np.float32))
    distances, _ = bank.nearest(queries)
    brute = torch.cdist(queries.double(), torch.from_numpy(bank.vectors()).double()).min(1).values.numpy()
    np.testing.assert_allclose(distances.numpy(), brute, rtol=1e-5, atol=1e-5)
    # Different code paths (and, blocked, different GEMM shapes) sum in a different order on another BLAS
    # kernel, so they agree to float32 rounding, not bit for bit. A misplaced row or a block seam that drops
    # or repeats rows would be off by the distance between neighbours (about 1 here), far above 1e-5.
    whole = bank.nearest_distances(queries).numpy()
    np.testing.assert_allclose(whole, distances.numpy(), rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(memory_bank, "_BLOCK_ELEMENTS", 5 * 700)  # blocks of 5 query rows
    blocked = bank.nearest_distances(queries).numpy()
    np.testing.assert_allclose(blocked, brute, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(blocked, whole, rtol=1e-5, atol=1e-5)


def test_neighbourhood_is_nearest_first_and_forgotten_when_the_bank_grows():
    line = np.arange(10, dtype=np.float32)[:, None] * np.float32([[1.0, 0.0]])
    bank = MemoryBank.build(line, "flat")
    rows = bank.neighbourhood(4, 3)
    assert rows[0].tolist() == [4.0, 0.0] and sorted(r[0] for r in rows[1:].tolist()) == [3.0, 5.0]
    bank.add(np.float32([[4.1, 0.0]]))
    rows = bank.neighbourhood(4, 3)
    assert rows[:2, 0].tolist() == pytest.approx([4.0, 4.1])


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_find_nearly_the_same_neighbours(kind, tmp_path):
    rng = np.random.default_rng(3)
    bank_vectors = rng.standard_normal((4000, 16)).astype(np.float32)
    queries = torch.from_numpy(rng.standard_normal((300, 16)).astype(np.float32))
    exact, _ = MemoryBank.build(bank_vectors, "flat").nearest(queries)
    approx_bank = MemoryBank.build(bank_vectors, kind)
    approx, _ = approx_bank.nearest(queries)
    assert approx_bank.kind == kind
    assert (approx >= exact - 1e-4).all()
    assert float((approx - exact).abs().mean()) < 0.05 * float(exact.mean())
    approx_bank.save(tmp_path / "index.faiss")
    reloaded, _ = MemoryBank.load(tmp_path / "index.faiss").nearest(queries)
    assert torch.equal(reloaded, approx)


def test_bank_add_extends_search():
    bank = MemoryBank.build(np.zeros((1, 4), np.float32), "flat")
    bank.add(np.ones((1, 4), np.float32))
    distance, index = bank.nearest(torch.ones(1, 4))
    assert bank.size == 2 and int(index[0]) == 1 and float(distance[0]) == 0.0


def test_threshold_rule_and_normalisation():
    scores = [1.0, 1.2, 0.8, 1.1, 0.9]
    expected = np.mean(scores) + 3 * np.std(scores, ddof=1)
    assert threshold_from_good(scores, 3.0) == pytest.approx(expected)
    assert threshold_from_good([1.0, 5.0], 0.0) == 5.0  # never below the highest held-out score
    calibration = calibrate(scores, [2.0, 2.2, 1.8, 2.1, 1.9], sigmas=3.0, source="test")
    assert calibration.normalise_score(calibration.image_threshold) == pytest.approx(0.5)
    assert calibration.normalise_map(np.float32([calibration.pixel_threshold]))[0] == pytest.approx(0.5)
    assert calibration.f1_threshold is None


def test_calibration_offers_f1_threshold_with_known_defects():
    calibration = calibrate([1.0, 1.1, 0.9], [1, 1, 1], sigmas=3.0, source="t", defect_scores=[1.6, 2.0])
    assert 1.1 < calibration.f1_threshold <= 1.6
