"""Exact nearest-neighbour search over a big bank that skips the clusters a query cannot reach.

The bank is split into clusters (a few rounds of k-means started from evenly spaced bank rows: the same
vectors always give the same clusters), each with its centroid and radius (its farthest member). For a
query ``q`` no member of cluster ``c`` is nearer than ``|q - c| - radius(c)`` (triangle inequality). Each
query is first searched in the cluster of its nearest centroid, which gives an upper bound on its answer;
then only the clusters whose lower bound is below that bound are searched. Every search is a GEMM of the
queries that need a cluster against that cluster's members, so the product keeps its speed.

The answer is the plain product's answer: a cluster is skipped only when its lower bound exceeds the bound
by more than a margin far above float32 rounding. On the bottle test images against a bank of ten times
the bottle patches 8.7 % of the (query, bank vector) pairs are computed; on KolektorSDD and magnetic tile the
bounds prune almost nothing, and the plain product takes over (docs/performance.md).
"""

from __future__ import annotations

import math

import torch

# Rounds of Lloyd's k-means: the clusters only steer the pruning (any partition gives the exact answer), and
# the third round changes the pruned share by a point or two while each one costs a pass over the bank.
_KMEANS_ROUNDS = 3
# Queries searched together: bounds the (queries x clusters) tables.
_QUERY_CHUNK = 16384
# A cluster is skipped only when its lower bound, squared, exceeds the upper bound's square by this share of
# the squared norms involved: float32 products err by about 1e-6 of that, so rounding never skips the
# cluster the plain product would answer from.
_MARGIN = 1e-4
# When the bounds leave more than this share of the (query, bank vector) pairs to compute, the rest is one
# plain product: on KolektorSDD and magnetic tile the bounds prune almost nothing (99 % left), and many small
# products then cost more than one big one. After such a chunk the next ones go straight to the product,
# trying the bounds again every _RETRY_AFTER chunks. The answer is exact either way; only the time differs.
_WORTH_PRUNING = 0.4
_RETRY_AFTER = 32
# Fewer queries than this go to the plain product, which is as fast for them, and leave the choice above alone
# (scoring looks up the one most anomalous patch again: far from the bank, it would prune nothing).
_FEW_QUERIES = 64


def cluster_count(size: int) -> int:
    """Clusters for a bank of ``size`` vectors: about sqrt(size), which balances the per-cluster overhead
    against the members searched (on bottle's 32,928 vectors 90 and 181 clusters search alike, 362 slower)."""
    return max(1, min(size, int(round(math.sqrt(size)))))


def _squared_distances(queries: torch.Tensor, points: torch.Tensor, point_sq_norms: torch.Tensor) -> torch.Tensor:
    partial = torch.addmm(point_sq_norms, queries, points.T, alpha=-2.0)
    return partial.add_((queries * queries).sum(1, keepdim=True)).clamp_min_(0)


class PrunedSearch:
    """The bank's partition into clusters and the exact search that uses it."""

    def __init__(self, vectors: torch.Tensor, clusters: int | None = None):
        size = vectors.shape[0]
        count = cluster_count(size) if clusters is None else max(1, min(size, clusters))
        sq_norms = (vectors * vectors).sum(1)
        # Evenly spaced rows as the first centroids: for a coreset bank (stored in pick order) the spread
        # of the picks carries over; no random draw, so a reload gives the same partition.
        centroids = vectors[torch.linspace(0, size - 1, count).round().long()].clone()
        for _ in range(_KMEANS_ROUNDS):
            assignment = self._assign(vectors, centroids)
            sums = torch.zeros_like(centroids).index_add_(0, assignment, vectors)
            members = torch.bincount(assignment, minlength=count)
            filled = members > 0
            centroids[filled] = sums[filled] / members[filled, None].to(vectors.dtype)
        assignment = self._assign(vectors, centroids)
        order = torch.argsort(assignment, stable=True)
        members = torch.bincount(assignment, minlength=count)
        own_distance = torch.linalg.vector_norm(vectors - centroids[assignment], dim=1)
        radius = torch.full((count,), -math.inf).scatter_reduce_(0, assignment, own_distance, "amax")
        filled = members > 0
        self.centroids = centroids[filled].contiguous()
        self.centroid_sq_norms = (self.centroids * self.centroids).sum(1)
        self.radius = radius[filled]
        # Per cluster: the bank positions of its members, their vectors transposed (the layout GEMM reads
        # fastest) and their squared norms.
        self.member_indices = list(order.split(members[filled].tolist()))
        self.member_vectors_t = [vectors[rows].T.contiguous() for rows in self.member_indices]
        self.member_sq_norms = [sq_norms[rows] for rows in self.member_indices]
        self.largest_sq_norm = float(sq_norms.max())
        self.member_counts = members[filled]
        self.vectors_t = vectors.T.contiguous()
        self.sq_norms = sq_norms
        self._product_chunks_left = 0  # chunks to answer with the plain product before trying the bounds again

    @property
    def clusters(self) -> int:
        return len(self.member_indices)

    @staticmethod
    def _assign(vectors: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
        sq_norms = (centroids * centroids).sum(1)
        return torch.cat([
            torch.addmm(sq_norms, vectors[start : start + 8192], centroids.T, alpha=-2.0).argmin(1)
            for start in range(0, vectors.shape[0], 8192)
        ])

    def _product(self, queries: torch.Tensor, best, best_index) -> None:
        """Lower ``best`` with the plain product of ``queries`` against the whole bank (less |q|^2)."""
        partial = torch.addmm(self.sq_norms, queries, self.vectors_t, alpha=-2.0)
        if best_index is None:
            torch.minimum(best, partial.amin(1), out=best)
        else:
            values, indices = partial.min(1)
            better = values < best
            best[better], best_index[better] = values[better], indices[better]

    def nearest(self, queries: torch.Tensor, with_index: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Squared distance to the nearest bank vector per query row, and its bank position if asked."""
        best = torch.empty(queries.shape[0])
        best_index = torch.empty(queries.shape[0], dtype=torch.int64) if with_index else None
        for start in range(0, queries.shape[0], _QUERY_CHUNK):
            chunk = queries[start : start + _QUERY_CHUNK]
            distances, indices = self._nearest_chunk(chunk, with_index)
            best[start : start + chunk.shape[0]] = distances
            if best_index is not None:
                best_index[start : start + chunk.shape[0]] = indices
        return best, best_index

    def _search(self, queries, best, best_index, pairs: torch.Tensor) -> None:
        """Search the (cluster, query) ``pairs``, sorted by cluster, and lower ``best`` where they beat it."""
        if not pairs.shape[0]:
            return
        rows = pairs[:, 1]
        # One gather puts each cluster's queries side by side: a slice per cluster, no copy in the loop.
        gathered = queries.index_select(0, rows)
        counts = torch.bincount(pairs[:, 0], minlength=self.clusters).tolist()
        found_values, found_indices, start = [], [], 0
        for cluster, count in enumerate(counts):
            if not count:
                continue
            partial = torch.addmm(
                self.member_sq_norms[cluster], gathered[start : start + count], self.member_vectors_t[cluster],
                alpha=-2.0,
            )
            start += count
            if best_index is None:
                found_values.append(partial.amin(1))
            else:
                values, local = partial.min(1)
                found_values.append(values)
                found_indices.append(self.member_indices[cluster][local])
        values = torch.cat(found_values)
        best.scatter_reduce_(0, rows, values, "amin")
        if best_index is not None:
            # Where several clusters tie at the minimum any of them is a right answer.
            winners = values == best[rows]
            best_index[rows[winners]] = torch.cat(found_indices)[winners]

    def _nearest_chunk(self, queries: torch.Tensor, with_index: bool):
        count = queries.shape[0]
        query_sq_norms = (queries * queries).sum(1)
        if self._product_chunks_left or count < _FEW_QUERIES:
            if count >= _FEW_QUERIES:
                self._product_chunks_left -= 1
            best = torch.full((count,), math.inf)
            best_index = torch.zeros(count, dtype=torch.int64) if with_index else None
            self._product(queries, best, best_index)
            return best.add_(query_sq_norms), best_index
        to_centroid = _squared_distances(queries, self.centroids, self.centroid_sq_norms)
        home = to_centroid.argmin(1)
        # |b|^2 - 2 q.b per query: |q - b|^2 less |q|^2, added back at the end.
        best = torch.full((count,), math.inf)
        best_index = torch.zeros(count, dtype=torch.int64) if with_index else None
        order = torch.argsort(home, stable=True)
        self._search(queries, best, best_index, torch.stack([home[order], order], 1))
        # Lower bound per (query, cluster) against the upper bound just found, both squared.
        upper = (best + query_sq_norms).clamp_min_(0)
        lower = (to_centroid.sqrt_() - self.radius).clamp_min_(0).square_()
        margin = _MARGIN * (query_sq_norms + self.largest_sq_norm)
        needed = lower <= (upper + margin)[:, None]
        needed[torch.arange(count), home] = False
        share = float(needed.sum(0).to(self.member_counts.dtype) @ self.member_counts) / (count * self.sq_norms.shape[0])
        if share > _WORTH_PRUNING:
            self._product_chunks_left = _RETRY_AFTER
            self._product(queries, best, best_index)
        else:
            pairs = needed.T.nonzero()  # (cluster, query), sorted by cluster
            self._search(queries, best, best_index, pairs)
        return best.add_(query_sq_norms), best_index
