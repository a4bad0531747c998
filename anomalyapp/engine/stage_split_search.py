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

    def squared_distances(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Full (queries x bank) squared distances: concatenated and weighted. For masked searches."""
        queries = queries.float()
        concatenated = torch.addmm(self._sq_norms, queries, self._vectors_t, alpha=-2.0)
        concatenated += (queries * queries).sum(1, keepdim=True)
        weighted_queries = queries * self.column_weights
        weighted = torch.addmm(self._weighted_sq_norms, weighted_queries, self._vectors_t, alpha=-2.0)
        weighted += (weighted_queries * queries).sum(1, keepdim=True)
        return concatenated, weighted

    def _concatenated_nearest(self, queries: torch.Tensor) -> torch.Tensor:
        partial = torch.addmm(self._sq_norms, queries, self._vectors_t, alpha=-2.0)
        return partial.amin(dim=1) + (queries * queries).sum(1)

    def search(self, queries: torch.Tensor, rows_per_image: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted nearest distance of every row, and each image's row of largest concatenated distance.

        ``queries`` holds the images' patches one image after another, ``rows_per_image`` each. Returns the
        weighted distances (N,) (not squared) and the top row of each image (B,), indices into ``queries``.
        """
        queries = queries.float().contiguous()
        weighted = torch.empty(queries.shape[0])
        upper = torch.empty(queries.shape[0])
        rows = self._rows_per_block()
        for start in range(0, queries.shape[0], rows):
            block = queries[start : start + rows]
            weighted_block = block * self.column_weights
            partial = torch.addmm(self._weighted_sq_norms, weighted_block, self._vectors_t, alpha=-2.0)
            values, nearest = partial.min(dim=1)
            weighted[start : start + block.shape[0]] = values + (weighted_block * block).sum(1)
            # The concatenated distance to the weighting's nearest vector bounds the concatenated nearest one.
            upper[start : start + block.shape[0]] = ((block - self._vectors[nearest]) ** 2).sum(1)
        weighted.clamp_min_(0)
        tops = []
        for first in range(0, queries.shape[0], rows_per_image):
            image_upper = upper[first : first + rows_per_image]
            # The largest lower bound: the image's maximum is at least this.
            largest = float(weighted[first : first + rows_per_image].max()) / self._largest_weight
            order = torch.argsort(image_upper, descending=True)
            top, top_value = int(order[0]), -1.0
            for chunk in range(0, order.shape[0], _CHUNK):
                bound = float(image_upper[order[chunk]])
                if bound < max(largest, top_value):
                    break
                candidates = order[chunk : chunk + _CHUNK]
                exact = self._concatenated_nearest(queries[first + candidates])
                best = int(torch.argmax(exact))
                if float(exact[best]) > top_value:
                    top, top_value = int(candidates[best]), float(exact[best])
            tops.append(first + top)
        return weighted.sqrt_(), torch.tensor(tops, dtype=torch.int64)
