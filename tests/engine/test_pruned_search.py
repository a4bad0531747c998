"""The cluster-pruned exact search of a big bank against the plain product and a float64 brute force."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from anomalyapp.engine.memory_bank import PRUNED_SEARCH_FROM, MemoryBank
from anomalyapp.engine.pruned_search import PrunedSearch


def clustered_rows(rows: int, dim: int, seed: int, clusters: int = 40) -> torch.Tensor:
    """Blobs of different sizes and spreads, like the patches of a few part regions and a background."""
    generator = torch.Generator().manual_seed(seed)
    centres = 8 * torch.randn(clusters, dim, generator=generator)
    cluster = torch.randint(clusters, (rows,), generator=generator)
    spread = 0.3 + torch.rand(clusters, generator=generator)
    return centres[cluster] + spread[cluster, None] * torch.randn(rows, dim, generator=generator)


def spread_rows(rows: int, dim: int, seed: int) -> torch.Tensor:
    """Points on a high-dimensional sphere: every distance alike, so no cluster can be skipped."""
    rows_ = torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed))
    return 10 * rows_ / torch.linalg.vector_norm(rows_, dim=1, keepdim=True)


def bank_pair(vectors: torch.Tensor) -> tuple[MemoryBank, MemoryBank]:
    """The same flat bank twice: one searched with pruning, one with the plain product."""
    pruned = MemoryBank.build(vectors.numpy(), "flat")
    pruned.pruned_search_from = 0
    plain = MemoryBank.build(vectors.numpy(), "flat")
    plain.pruned_search_from = sys.maxsize
    assert (pruned.search, plain.search) == ("pruned", "product")
    return pruned, plain


def brute_force(queries: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    return torch.cdist(queries.double(), vectors.double()).amin(1)


def check_same_answer(pruned: MemoryBank, plain: MemoryBank, queries: torch.Tensor, vectors: torch.Tensor):
    truth = brute_force(queries, vectors)
    scale = float(truth.max())
    distances = pruned.nearest_distances(queries)
    torch.testing.assert_close(distances, plain.nearest_distances(queries), rtol=0, atol=1e-4 * scale)
    torch.testing.assert_close(distances.double(), truth, rtol=0, atol=1e-4 * scale)
    found, indices = pruned.nearest(queries)
    plain_found, plain_indices = plain.nearest(queries)
    torch.testing.assert_close(found, plain_found, rtol=0, atol=1e-4 * scale)
    # The index found is a nearest one: its true distance is the minimum, up to rounding.
    at_index = torch.linalg.vector_norm(queries.double() - vectors.double()[indices], dim=1)
    torch.testing.assert_close(at_index, truth, rtol=0, atol=1e-4 * scale)
    # And it is the plain product's index except where two bank vectors are (nearly) as near.
    all_distances = torch.cdist(queries.double(), vectors.double())
    second = all_distances.topk(2, dim=1, largest=False).values[:, 1]
    clear = (second - truth) > 1e-3 * scale
    assert bool(clear.any())
    assert torch.equal(indices[clear], plain_indices[clear])


def test_pruned_search_equals_the_product_on_clustered_data():
    vectors = clustered_rows(6000, 48, seed=1)
    near = clustered_rows(1500, 48, seed=1)[:1500] + 0.05 * torch.randn(1500, 48)
    far = 12 * torch.randn(300, 48, generator=torch.Generator().manual_seed(5))  # anomalies: far from all
    on_bank = vectors[:200] + 0.2 * torch.randn(200, 48)  # close to bank vectors (not at 0: rounding noise)
    queries = torch.cat([near, far, on_bank])
    pruned, plain = bank_pair(vectors)
    check_same_answer(pruned, plain, queries, vectors)


def test_pruning_skips_most_of_a_clustered_bank():
    vectors = clustered_rows(6000, 48, seed=2)
    search = PrunedSearch(vectors)
    queries = clustered_rows(800, 48, seed=2) + 0.05 * torch.randn(800, 48)
    searched = []
    original = search._search

    def counting(queries_, best, best_index, pairs):  # counts the members each (cluster, query) pair reads
        sizes = torch.tensor([len(members) for members in search.member_indices])
        searched.append(int(sizes[pairs[:, 0]].sum()))
        return original(queries_, best, best_index, pairs)

    search._search = counting
    search.nearest(queries, with_index=False)
    assert sum(searched) < 0.25 * queries.shape[0] * vectors.shape[0]


def test_pruned_search_equals_the_product_where_pruning_cannot_help():
    vectors = spread_rows(3000, 64, seed=3)
    queries = spread_rows(700, 64, seed=4)
    pruned, plain = bank_pair(vectors)
    check_same_answer(pruned, plain, queries, vectors)


def test_ties_are_answered_with_one_of_the_nearest():
    vectors = clustered_rows(2000, 16, seed=6)
    vectors = torch.cat([vectors, vectors[:500]])  # exact duplicates: two right answers
    queries = vectors[:500] + 0.05 * torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
    pruned, _ = bank_pair(vectors)
    distances, indices = pruned.nearest(queries)
    twins = torch.where(indices >= 2000, indices - 2000, indices)
    assert torch.equal(twins, torch.arange(500))
    torch.testing.assert_close(distances.double(), brute_force(queries, vectors), rtol=0, atol=1e-2)


@pytest.mark.parametrize("clusters", [1, 7, 5000])
def test_any_partition_gives_the_exact_answer(clusters):
    vectors = clustered_rows(5000, 24, seed=7)
    queries = clustered_rows(600, 24, seed=8) + torch.randn(600, 24)
    squared, indices = PrunedSearch(vectors, clusters).nearest(queries, with_index=True)
    truth = brute_force(queries, vectors)
    torch.testing.assert_close(squared.clamp_min(0).sqrt().double(), truth, rtol=0, atol=1e-3)
    torch.testing.assert_close((queries.double() - vectors.double()[indices]).norm(dim=1), truth, rtol=0, atol=1e-3)


def test_a_bank_loaded_from_disk_uses_the_same_search(tmp_path):
    vectors = clustered_rows(PRUNED_SEARCH_FROM, 32, seed=9)
    bank = MemoryBank.build(vectors.numpy(), "flat")
    small = MemoryBank.build(vectors[: PRUNED_SEARCH_FROM - 1].numpy(), "flat")
    assert (bank.search, small.search) == ("pruned", "product")
    bank.save(tmp_path / "index.faiss")
    small.save(tmp_path / "small.faiss")
    loaded = MemoryBank.load(tmp_path / "index.faiss")
    assert (loaded.search, MemoryBank.load(tmp_path / "small.faiss").search) == ("pruned", "product")
    queries = clustered_rows(500, 32, seed=10) + 0.1 * torch.randn(500, 32)
    torch.testing.assert_close(loaded.nearest_distances(queries), bank.nearest_distances(queries))
    # The partition is derived from the saved vectors alone: the same clusters after the reload.
    assert loaded._pruned_search().clusters == bank._pruned_search().clusters
    for ours, theirs in zip(loaded._pruned_search().member_indices, bank._pruned_search().member_indices):
        assert torch.equal(ours, theirs)


def test_adding_vectors_derives_the_clusters_again():
    vectors = clustered_rows(4000, 32, seed=11)
    bank = MemoryBank.build(vectors[:3000].numpy(), "flat")
    bank.pruned_search_from = 0
    queries = vectors[3000:3400] + 0.01 * torch.randn(400, 32, generator=torch.Generator().manual_seed(0))
    before = bank.nearest_distances(queries)
    bank.add(vectors[3000:].numpy())
    after, indices = bank.nearest(queries)
    assert float(after.max()) < 0.2 < float(before.min())
    assert torch.equal(indices, torch.arange(3000, 3400))


def test_approximate_banks_keep_faiss():
    vectors = np.random.default_rng(0).normal(size=(PRUNED_SEARCH_FROM, 16)).astype(np.float32)
    assert MemoryBank.build(vectors, "hnsw").search == "faiss"


def test_a_lone_far_query_does_not_turn_the_pruning_off():
    vectors = clustered_rows(6000, 48, seed=12)
    search = PrunedSearch(vectors)
    searched = []
    original = search._search

    def counting(queries_, best, best_index, pairs):
        searched.append(pairs.shape[0])
        return original(queries_, best, best_index, pairs)

    search._search = counting
    far = 40 * torch.ones(1, 48)  # prunes nothing: on its own it is answered by the plain product
    torch.testing.assert_close(search.nearest(far, False)[0].sqrt().double(), brute_force(far, vectors), rtol=1e-5, atol=0)
    assert not searched
    search.nearest(clustered_rows(800, 48, seed=12) + 0.05 * torch.randn(800, 48), False)
    assert searched  # the next image's patches are still searched cluster by cluster
