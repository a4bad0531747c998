"""Greedy coreset subsampling (k-center greedy) for the PatchCore memory bank.

Roth et al. select the bank by iteratively taking the patch farthest from everything chosen so far, on
features reduced by a random projection (Johnson-Lindenstrauss) so each step is cheap. The result covers
every training patch within the final ``radius``; ``add_normal`` reuses that radius to decide which new
patches the bank still lacks.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import torch

from anomalyapp.core.cancel import CancelToken, check
from anomalyapp.core.types import Progress


@dataclass(frozen=True)
class CoresetResult:
    indices: torch.Tensor  # int64 indices into the input rows, in selection order
    radius: float  # largest distance from any input row to its nearest selected row (projected space)


def random_projection(features: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """Project rows to ``dim`` dimensions with a seeded Gaussian matrix; identity when already small."""
    if features.shape[1] <= dim:
        return features
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(features.shape[1], dim, generator=generator) / dim**0.5
    return features @ matrix


def greedy_coreset(
    features: torch.Tensor,
    count: int,
    *,
    seed: int = 0,
    projection_dim: int = 128,
    cancel: CancelToken | None = None,
    report_every: int = 100,
) -> Generator[Progress, None, CoresetResult]:
    """Select ``count`` rows by k-center greedy; yields progress, returns a ``CoresetResult``."""
    total = features.shape[0]
    count = max(1, min(count, total))
    reduced = random_projection(features.float(), projection_dim, seed).contiguous()
    squared_norms = (reduced * reduced).sum(1)
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.empty(count, dtype=torch.int64)
    chosen[0] = int(torch.randint(total, (1,), generator=generator))
    # Squared distance of every row to its nearest chosen centre, updated one centre at a time.
    nearest = torch.full((total,), float("inf"))
    for step in range(count):
        centre = reduced[chosen[step]]
        distances = squared_norms - 2 * (reduced @ centre) + squared_norms[chosen[step]]
        torch.minimum(nearest, distances.clamp_min_(0), out=nearest)
        if step + 1 < count:
            chosen[step + 1] = torch.argmax(nearest)
        if (step + 1) % report_every == 0 or step + 1 == count:
            check(cancel)
            yield Progress("coreset", step + 1, count, f"coreset {step + 1}/{count}")
    return CoresetResult(chosen, float(nearest.max().sqrt()))
