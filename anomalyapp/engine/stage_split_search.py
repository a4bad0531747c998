"""One memory bank searched under two weightings of the backbone stages (docs/accuracy.md, stage balance).

The bank holds the stages concatenated as they come. A second weighting multiplies each column's squared
difference by a factor (``column_weights``: the square of the stage's weight), so

    weighted(x, b) = sum_c w_c (x_c - b_c)^2 = |b|_w^2 - 2 (w * x) . b + |x|_w^2,

a plain product of the reweighted queries with the very same, unweighted bank: the stages' distances need
not be computed apart (measured on 784 queries x 2,600 and 20,000 vectors, one product per stage and their
combinations cost 2.0-3.0x a plain search, this 1.15x).

The anomaly map needs the weighted distance of every patch; the image score needs only the patch with the
largest concatenated distance. That patch is found without a second full search: for any patch,

    weighted / max(w)  <=  concatenated  <=  |x - b*|^2, b* its nearest vector under the weighting,

so the patches are taken in order of decreasing upper bound and searched exactly until the next bound is
below the largest distance found; no patch left can hold the maximum.
"""

from __future__ import annotations

import torch

# Bound on the (queries x bank) distance block held in memory at once, in float32 elements.
_BLOCK_ELEMENTS = 1 << 24
# Rows searched exactly at a time while looking for an image's largest concatenated distance: on bottle the
# first 64 always held it.
_CHUNK = 32


class StageSplitSearch:
    """Exact nearest-neighbour distances of patches under the bank's own and a per-column weighting."""

    def __init__(self, vectors: torch.Tensor, column_weights: torch.Tensor):
        vectors = vectors.float()
        self.size = vectors.shape[0]
        self.column_weights = column_weights.float()
        self._vectors_t = vectors.T.contiguous()
        self._vectors = vectors.contiguous()  # rows, gathered by index for the upper bounds
        self._sq_norms = (vectors * vectors).sum(1)
        self._weighted_sq_norms = (vectors * vectors * self.column_weights).sum(1)
        self._largest_weight = float(self.column_weights.max())

    def _rows_per_block(self) -> int:
        return max(1, _BLOCK_ELEMENTS // max(1, self.size))

    def _weighted_bounds(self, queries: torch.Tensor, masks: list[tuple[slice, torch.Tensor]] | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each query's squared weighted nearest distance (clamped at 0), and its squared concatenated distance to
        that nearest vector, which bounds its concatenated nearest distance from above. ``masks``: (rows, bank
        columns) pairs left out of the search, as each image's own vectors are in the leave-one-out calibration."""
        weighted_queries = queries * self.column_weights
        partial = torch.addmm(self._weighted_sq_norms, weighted_queries, self._vectors_t, alpha=-2.0)
        for rows, columns in masks or ():
            partial[rows, columns] = float("inf")
        values, nearest = partial.min(dim=1)
        del partial
        weighted = (values + (weighted_queries * queries).sum(1)).clamp_min_(0)
        return weighted, ((queries - self._vectors[nearest]) ** 2).sum(1)

    def _concatenated_nearest(self, queries: torch.Tensor, excluded: torch.Tensor | None = None) -> torch.Tensor:
        """Squared concatenated distance of each query to its nearest bank vector, ``excluded`` columns left out."""
        partial = torch.addmm(self._sq_norms, queries, self._vectors_t, alpha=-2.0)
        if excluded is not None:
            partial[:, excluded] = float("inf")
        return partial.amin(dim=1) + (queries * queries).sum(1)

    def _concatenated_index(self, query: torch.Tensor, excluded: torch.Tensor | None = None) -> int:
        """The bank row nearest to one query under the concatenated distance, ``excluded`` columns left out."""
        partial = self._sq_norms - 2.0 * (self._vectors @ query)
        if excluded is not None:
            partial[excluded] = float("inf")
        return int(torch.argmin(partial))

    def _largest_concatenated(self, queries: torch.Tensor, weighted: torch.Tensor, upper: torch.Tensor,
                              excluded: torch.Tensor | None = None) -> tuple[int, float]:
        """One image's row of largest concatenated nearest distance, and that distance squared.

        ``weighted`` holds the rows' squared weighted nearest distances and ``upper`` their squared concatenated
        distances to the weighting's nearest vector (an upper bound), both with ``excluded`` left out as here. The
        rows are searched exactly in order of decreasing bound until the next bound is below both the largest
        distance found and the largest lower bound.
        """
        largest = float(weighted.max()) / self._largest_weight
        order = torch.argsort(upper, descending=True)
        top, top_value = int(order[0]), -1.0
        for chunk in range(0, order.shape[0], _CHUNK):
            # The first chunk is always searched: its bound is at least the largest lower bound (an infinite one,
            # where every column is excluded, included).
            if chunk and float(upper[order[chunk]]) < max(largest, top_value):
                break
            candidates = order[chunk : chunk + _CHUNK]
            exact = self._concatenated_nearest(queries[candidates], excluded)
            best = int(torch.argmax(exact))
            if float(exact[best]) > top_value:
                top, top_value = int(candidates[best]), float(exact[best])
        return top, top_value

    def search(self, queries: torch.Tensor, rows_per_image: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted nearest distance of every row, and each image's row of largest concatenated distance.

        ``queries`` holds the images' patches one image after another, ``rows_per_image`` each. Returns the
        weighted distances (N,) (not squared) and the top row of each image (B,), indices into ``queries``.
        """
        queries = queries.float().contiguous()
        rows = self._rows_per_block()
        blocks = [self._weighted_bounds(queries[start : start + rows]) for start in range(0, queries.shape[0], rows)]
        weighted = torch.cat([block_weighted for block_weighted, _ in blocks])
        upper = torch.cat([block_upper for _, block_upper in blocks])
        tops = []
        for first in range(0, queries.shape[0], rows_per_image):
            image = slice(first, first + rows_per_image)
            top, _ = self._largest_concatenated(queries[image], weighted[image], upper[image])
            tops.append(first + top)
        return weighted.sqrt_(), torch.tensor(tops, dtype=torch.int64)

    def leave_out_search(self, queries: torch.Tensor, bounds: list[int], excluded: list[torch.Tensor]
                         ) -> tuple[torch.Tensor, list[tuple[int, float, int]]]:
        """``search`` for the patches of images the bank was built from, each image's own bank vectors left out.

        Image k's patches are rows ``bounds[k]:bounds[k + 1]`` of ``queries`` and ``excluded[k]`` holds the bank
        rows it contributed. The bounds hold as they do in ``search``, every distance taken over the same columns.
        One weighted product of all rows replaces the two full products (concatenated and weighted) that a masked
        search of both distances needs; the concatenated one is computed only for the rows that may hold an
        image's maximum. Returns the weighted distances (N,) (not squared) and, per image, its top row (an index
        into ``queries``), that row's squared concatenated distance and the index of its nearest bank vector.
        """
        queries = queries.float().contiguous()
        weighted, upper = self._weighted_bounds(
            queries, [(slice(bounds[image], bounds[image + 1]), columns) for image, columns in enumerate(excluded)])
        tops = []
        for image, columns in enumerate(excluded):
            rows = slice(bounds[image], bounds[image + 1])
            top, value = self._largest_concatenated(queries[rows], weighted[rows], upper[rows], columns)
            row = bounds[image] + top
            tops.append((row, value, self._concatenated_index(queries[row], columns)))
        return weighted.sqrt_(), tops
