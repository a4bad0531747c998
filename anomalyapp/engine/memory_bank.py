"""The PatchCore memory bank: patch vectors held in a faiss index.

The bank is stored in faiss's own file format. Exact search ("flat") is computed with torch's GEMM over
the very vectors of the faiss flat index: on a 2-core CPU faiss-cpu's flat search of 784 queries against
3,300 vectors of 152 dimensions takes about 26 ms, torch (MKL) about 3.3 ms, for the same exact answer.
A big exact bank is searched with cluster pruning (``engine.pruned_search``): the same answer, a fraction
of the product. Approximate indexes (HNSW, IVF) are searched by faiss itself; they pay off only for very
large banks.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import torch

from anomalyapp.engine.pruned_search import PrunedSearch

INDEX_KINDS = ("auto", "flat", "hnsw", "ivf")
# Above this many vectors "auto" picks HNSW: exact search then costs more than the backbone.
AUTO_APPROXIMATE_ABOVE = 200_000
# From this many vectors an exact bank is searched cluster by cluster, skipping the clusters a query cannot
# reach (same answer). Measured on bottle (docs/performance.md): pruning wins from about 4,000 vectors at one
# thread; the threshold keeps a margin for two threads, whose per-call overhead is larger.
PRUNED_SEARCH_FROM = 8192
# Bound on the (queries x bank) distance block held in memory at once, in float32 elements.
_BLOCK_ELEMENTS = 1 << 24
# Neighbourhoods kept for re-weighting; a bound keeps a huge bank's cache to tens of megabytes.
_NEIGHBOURHOOD_CACHE_SIZE = 4096


def _make_index(kind: str, dim: int, count: int, seed: int) -> faiss.Index:
    if kind == "auto":
        kind = "hnsw" if count > AUTO_APPROXIMATE_ABOVE else "flat"
    if kind == "flat":
        return faiss.IndexFlatL2(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32)
        index.hnsw.efSearch = 64
        return index
    if kind == "ivf":
        lists = max(1, int(4 * count**0.5))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, lists)
        index.nprobe = max(1, lists // 16)
        index.cp.seed = seed
        return index
    raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")


class MemoryBank:
    """Nearest-neighbour search over patch vectors; distances are Euclidean (not squared)."""

    def __init__(self, index: faiss.Index):
        self.index = index
        if isinstance(index, faiss.IndexIVF):
            index.make_direct_map()  # lets reconstruct() return stored vectors for re-weighting
        self._vectors: torch.Tensor | None = None
        self._sq_norms: torch.Tensor | None = None
        self._vectors_t: torch.Tensor | None = None
        self._neighbourhoods: dict[tuple[int, int], torch.Tensor] = {}
        self._pruned: PrunedSearch | None = None
        # Banks of at least this many vectors use the pruned search; a benchmark or test may move it.
        self.pruned_search_from = PRUNED_SEARCH_FROM
        self._refresh_exact_cache()

    @classmethod
    def build(cls, vectors: np.ndarray, kind: str = "auto", seed: int = 0) -> MemoryBank:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = _make_index(kind, vectors.shape[1], len(vectors), seed)
        if not index.is_trained:
            index.train(vectors)
        index.add(vectors)
        return cls(index)

    @property
    def is_exact(self) -> bool:
        return isinstance(self.index, faiss.IndexFlat)

    @property
    def kind(self) -> str:
        if self.is_exact:
            return "flat"
        return "hnsw" if isinstance(self.index, faiss.IndexHNSW) else "ivf"

    @property
    def search(self) -> str:
        """How a query is answered: "pruned" or "product" (both exact), or "faiss" (the approximate kinds)."""
        if not self.is_exact:
            return "faiss"
        return "pruned" if self.size >= self.pruned_search_from else "product"

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def vectors(self) -> np.ndarray:
        return self.index.reconstruct_n(0, self.size)

    def _refresh_exact_cache(self) -> None:
        self._neighbourhoods.clear()
        self._pruned = None  # derived again from the vectors on the next search
        if self.is_exact:
            # Held transposed and contiguous, the layout GEMM reads fastest; rows are a view of it.
            self._vectors_t = torch.from_numpy(self.vectors()).T.contiguous()
            self._vectors = self._vectors_t.T
            self._sq_norms = (self._vectors * self._vectors).sum(1)

    def add(self, vectors: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        if isinstance(self.index, faiss.IndexIVF):
            self.index.make_direct_map()
        self._refresh_exact_cache()

    def _pruned_search(self) -> PrunedSearch | None:
        """The bank's clusters for the pruned search, built on first use; None when the plain product is used."""
        if self.search != "pruned":
            return None
        if self._pruned is None:
            self._pruned = PrunedSearch(self._vectors)
        return self._pruned

    def _exact_blocks(self, queries: torch.Tensor):
        """(start, partial) per block of queries; partial[i, j] = |b_j|^2 - 2 q_i.b_j, i.e. |q_i - b_j|^2 - |q_i|^2."""
        rows = max(1, _BLOCK_ELEMENTS // max(1, self.size))
        for start in range(0, queries.shape[0], rows):
            yield start, torch.addmm(self._sq_norms, queries[start : start + rows], self._vectors_t, alpha=-2.0)

    def nearest_distances(self, queries: torch.Tensor) -> torch.Tensor:
        """Distance to the nearest bank vector for each query row.

        Cheaper than ``nearest``: a row minimum without its position costs a third of one with it, and
        scoring needs the position of one patch per image only.
        """
        queries = queries.float().contiguous()
        if not self.is_exact:
            return self.nearest(queries)[0]
        pruned = self._pruned_search()
        if pruned is not None:
            return pruned.nearest(queries, with_index=False)[0].clamp_min_(0).sqrt_()
        best = torch.empty(queries.shape[0])
        for start, partial in self._exact_blocks(queries):
            block = queries[start : start + partial.shape[0]]
            # |q|^2 is constant per row, so it is added after the minimum.
            best[start : start + partial.shape[0]] = partial.amin(dim=1) + (block * block).sum(1)
        return best.clamp_min_(0).sqrt_()

    def largest_nearest_distance(self, queries: torch.Tensor, upper_bounds: torch.Tensor) -> float:
        """The largest distance from a query row to its nearest bank vector: the bank's coverage radius.

        ``upper_bounds[i]`` is at least query i's distance to the bank (its distance to any one bank vector
        will do). Queries are searched in order of decreasing bound, and the search stops once the largest
        distance found reaches the next bound: no query left can exceed it. With the coreset's own
        assignment as bounds a few thousand of the 235,200 training patches of a 300-image line are searched
        instead of all of them (a full product of the table and the bank, about 1.7 TFLOP).
        """
        order = torch.argsort(upper_bounds, descending=True)
        largest, chunk = 0.0, 2048
        for start in range(0, order.shape[0], chunk):
            if float(upper_bounds[order[start]]) <= largest:
                break
            rows = order[start : start + chunk]
            largest = max(largest, float(self.nearest_distances(queries[rows]).max()))
            chunk = min(4 * chunk, 1 << 16)
        return largest

    def nearest(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Distance to, and index of, the nearest bank vector for each query row."""
        queries = queries.float().contiguous()
        if not self.is_exact:
            distances, indices = self.index.search(queries.numpy(), 1)
            return torch.from_numpy(distances[:, 0]).clamp_min_(0).sqrt_(), torch.from_numpy(indices[:, 0])
        pruned = self._pruned_search()
        if pruned is not None:
            squared, indices = pruned.nearest(queries, with_index=True)
            return squared.clamp_min_(0).sqrt_(), indices
        best_distance = torch.empty(queries.shape[0])
        best_index = torch.empty(queries.shape[0], dtype=torch.int64)
        for start, partial in self._exact_blocks(queries):
            block = queries[start : start + partial.shape[0]]
            values, indices = partial.min(dim=1)
            best_distance[start : start + partial.shape[0]] = values + (block * block).sum(1)
            best_index[start : start + partial.shape[0]] = indices
        return best_distance.clamp_min_(0).sqrt_(), best_index

    def neighbours_of(self, bank_indices: torch.Tensor, count: int) -> torch.Tensor:
        """Indices of the ``count`` bank vectors nearest to the given bank vectors (themselves included)."""
        count = min(count, self.size)
        if self.is_exact:
            query = self._vectors[bank_indices]
            squared = self._sq_norms - 2 * (query @ self._vectors_t)  # + |q|^2, which leaves the order as is
            return torch.topk(squared, count, dim=1, largest=False).indices
        vectors = np.stack([self.index.reconstruct(int(i)) for i in bank_indices])
        _, indices = self.index.search(vectors, count)
        return torch.from_numpy(indices)

    def neighbourhood(self, bank_index: int, count: int) -> torch.Tensor:
        """The ``count`` bank vectors nearest to bank vector ``bank_index``, nearest first, as rows.

        Cached until the bank changes: scoring asks for one per image, and on a production line the same
        few bank vectors are asked for again and again.
        """
        key = (bank_index, count)
        rows = self._neighbourhoods.get(key)
        if rows is None:
            if len(self._neighbourhoods) >= _NEIGHBOURHOOD_CACHE_SIZE:
                self._neighbourhoods.clear()
            rows = self.rows(self.neighbours_of(torch.tensor([bank_index]), count)[0])
            self._neighbourhoods[key] = rows
        return rows

    def rows(self, indices: torch.Tensor) -> torch.Tensor:
        if self.is_exact:
            return self._vectors[indices]
        return torch.from_numpy(np.stack([self.index.reconstruct(int(i)) for i in indices.reshape(-1)])).reshape(
            *indices.shape, self.dim
        )

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path) -> MemoryBank:
        index = faiss.read_index(str(path))
        if isinstance(index, faiss.IndexHNSW):
            index.hnsw.efSearch = 64
        return cls(index)
