"""Greedy coreset subsampling (k-center greedy) for the PatchCore memory bank.

Roth et al. select the bank by iteratively taking the patch farthest from everything chosen so far, on
features reduced by a random projection (Johnson-Lindenstrauss) so each step is cheap. The result covers
every training patch within the final ``radius``; ``add_normal`` reuses that radius to decide which new
patches the bank still lacks.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass

import torch

from anomalyapp.core.cancel import CancelToken, check
from anomalyapp.core.types import Progress


@dataclass(frozen=True)
class CoresetResult:
    indices: torch.Tensor  # int64 indices into the input rows, in selection order
    radius: float  # largest distance from any input row to its nearest selected row (projected space)
    # Per input row, the position in ``indices`` of its nearest selected row (projected space): the full-space
    # distance to that row bounds the row's distance to the bank from above.
    assignment: torch.Tensor | None = None


def random_projection(features: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """Project rows to ``dim`` dimensions with a seeded Gaussian matrix; identity when already small."""
    if features.shape[1] <= dim:
        return features
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(features.shape[1], dim, generator=generator) / dim**0.5
    return features @ matrix


# Rows per block of the accelerated greedy loop. Small blocks are skipped more often; each block costs a
# few scalar operations per step. 128 measured best on the 300-image line (64 and 256 within 10 %).
_BLOCK_ROWS = 128


def _blocks_of_neighbours(reduced: torch.Tensor, block_rows: int, generator: torch.Generator) -> torch.Tensor:
    """A permutation of the rows that puts near rows next to each other, to be cut into blocks.

    Each row goes to its nearest of one seed row per block (seeds drawn at random, so dense regions get
    more of them), rows are ordered by seed, and the order is cut into blocks of ``block_rows``: a block
    then holds rows of one or two small neighbourhoods and has a small radius.
    """
    total = reduced.shape[0]
    seeds = reduced[torch.randperm(total, generator=generator)[: max(1, total // block_rows)]]
    seed_norms = (seeds * seeds).sum(1)
    owner = torch.empty(total, dtype=torch.int64)
    step = max(1, (1 << 22) // seeds.shape[0])
    for start in range(0, total, step):
        part = reduced[start : start + step]
        owner[start : start + step] = torch.addmm(seed_norms, part, seeds.T, alpha=-2.0).argmin(1)
    return torch.argsort(owner, stable=True)


def greedy_coreset(
    features: torch.Tensor,
    count: int,
    *,
    seed: int = 0,
    projection_dim: int = 128,
    cancel: CancelToken | None = None,
    report_every: int = 100,
    block_rows: int = _BLOCK_ROWS,
) -> Generator[Progress, None, CoresetResult]:
    """Select ``count`` rows by k-center greedy; yields progress, returns a ``CoresetResult``.

    The picks are those of the textbook loop (``reference`` in the tests: every step updates every row's
    distance to its nearest chosen centre and takes the farthest row), up to exact ties and float rounding.
    That loop reads the whole table once per pick, and the bank of 300 images asks for 23,520 picks of
    235,200 rows. Here rows sit in blocks of near neighbours, each with a centre ``g`` and radius ``R``, and
    a block is skipped when the triangle inequality proves no row of it can get closer to the new centre
    ``c`` than it already is to a chosen one: ``|c - g| - R`` at least the block's largest such distance.
    After the first few hundred picks most blocks are skipped at every step.
    """
    threads = torch.get_num_threads()
    # One thread: every step is a chain of small, memory-bound operations, and OpenMP's barriers between
    # them cost more than a second core gains. Measured on the 2-core AMD EPYC with other jobs running:
    # 100 ms per textbook step at 1 thread, 174 ms at 2. Put back as soon as the loop ends.
    torch.set_num_threads(1)
    try:
        return (yield from _greedy_coreset(features, count, seed, projection_dim, cancel, report_every, block_rows))
    finally:
        torch.set_num_threads(threads)


def _greedy_coreset(features, count, seed, projection_dim, cancel, report_every, block_rows):
    total = features.shape[0]
    count = max(1, min(count, total))
    reduced = random_projection(features.float(), projection_dim, seed).contiguous()
    generator = torch.Generator().manual_seed(seed)
    first = int(torch.randint(total, (1,), generator=generator))
    dim = reduced.shape[1]

    order = _blocks_of_neighbours(reduced, block_rows, generator)
    block_count = -(-total // block_rows)
    # Padding repeats the last row: a repeated row has its original's distance and maps back to it.
    padded_order = torch.cat([order, order[-1:].expand(block_count * block_rows - total)])
    rows_of = padded_order.reshape(block_count, block_rows)  # original row index of every block cell
    blocks = reduced[padded_order].reshape(block_count, block_rows, dim)
    position = torch.empty(total, dtype=torch.int64)  # each row's cell in the blocks
    position[order] = torch.arange(total)
    del reduced  # the blocks hold every row: one table in memory, not two
    block_norms = (blocks * blocks).sum(2)
    centres = blocks.mean(1)
    spread = torch.linalg.vector_norm(blocks - centres[:, None, :], dim=2) * (1 + 1e-5)  # |x - g|, rounded up
    centre_norms = (centres * centres).sum(1)
    # Rounding of the expanded squared distances is bounded by a few float32 ulps of the largest norm;
    # a block is skipped only when the bound clears its largest distance by more than that.
    slack = 1e-5 * float(block_norms.max()) + 1e-12
    distance_slack = slack**0.5

    # Squared distance of every row to its nearest chosen centre, which pick that centre was (-1: none
    # yet), and the largest distance per block.
    nearest = torch.full((block_count, block_rows), float("inf"))
    owner = torch.full((block_count, block_rows), -1, dtype=torch.int64)
    farthest = torch.full((block_count,), float("inf"))
    reach = torch.full((block_count,), float("inf"))  # per block, the largest |x - g| + |x - nearest centre|
    flat_nearest, flat_owner = nearest.view(-1), owner.view(-1)
    flat_blocks, flat_norms = blocks.view(-1, dim), block_norms.view(-1)
    chosen = torch.empty(count, dtype=torch.int64)
    chosen[0] = first
    picked = torch.empty(count, dim)
    picked_norms = torch.empty(count)
    for step in range(count):
        centre = flat_blocks[position[chosen[step]]]
        centre_norm = centre @ centre
        picked[step] = centre
        picked_norms[step] = centre_norm
        to_centres = (centre_norms - 2 * (centres @ centre) + centre_norm).clamp_min_(0).sqrt_()
        # A row can change only if the new centre is closer than its nearest one, and
        # |x - c| >= |c - g| - |x - g|: a block whose reach is within |c - g| keeps every row as it is.
        hit = (to_centres < reach + distance_slack).nonzero().squeeze(1)
        if step and hit.numel():
            # A row of such a block can change only if the new centre is nearer than twice its distance to
            # its own centre: |x - c| >= |c - a| - |x - a| >= |x - a| otherwise. (Flat indices and
            # index_select throughout: torch's multi-dimensional indexing costs ten times as much here.)
            to_picked = picked_norms[:step] - 2 * (picked[:step] @ centre) + centre_norm
            near = nearest.index_select(0, hit)
            bound = to_picked.take(owner.index_select(0, hit))
            rows = (bound <= 4 * near + slack).view(-1).nonzero().squeeze(1)
            if rows.numel():
                cells = hit.index_select(0, rows // block_rows) * block_rows + rows % block_rows
                distances = torch.addmv(flat_norms.index_select(0, cells), flat_blocks.index_select(0, cells),
                                        centre, alpha=-2.0).add_(centre_norm).clamp_min_(0)
                closer = distances < near.view(-1).index_select(0, rows)
                cells = cells[closer]
                flat_nearest.index_copy_(0, cells, distances[closer])
                flat_owner.index_fill_(0, cells, step)
                near = nearest.index_select(0, hit)
                farthest.index_copy_(0, hit, near.amax(1))
                reach.index_copy_(0, hit, (spread.index_select(0, hit) + near.sqrt()).amax(1))
        elif hit.numel():  # the first pick: every row's nearest centre is this one
            distances = torch.addmv(block_norms.view(-1), blocks.view(-1, dim), centre, alpha=-2.0)
            torch.minimum(flat_nearest, distances.add_(centre_norm).clamp_min_(0), out=flat_nearest)
            owner.fill_(0)
            farthest = nearest.amax(1)
            reach = (spread + nearest.sqrt()).amax(1)
        if step + 1 < count:
            block = int(torch.argmax(farthest))
            chosen[step + 1] = rows_of[block, int(torch.argmax(nearest[block]))]
        if (step + 1) % report_every == 0 or step + 1 == count:
            check(cancel)
            yield Progress("coreset", step + 1, count, f"coreset {step + 1}/{count}")
    assignment = torch.empty(total, dtype=torch.int64)
    assignment[rows_of.view(-1)] = flat_owner  # a padding cell repeats its row, and with it the row's values
    return CoresetResult(chosen, float(farthest.max().sqrt()), assignment)


def coreset_seconds(total: int, count: int, projection_dim: int = 128, block_rows: int = _BLOCK_ROWS) -> float:
    """About how long ``greedy_coreset`` takes to pick ``count`` of ``total`` rows on this machine.

    One step of the loop above is run on a table of the real size: the share of blocks and rows a step
    visits is the one measured on real patch tables (about half the blocks, 1.5 % of the rows, on bottle
    and on the 300-image line), whatever the data here. The first step, a full pass, is timed apart.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the loop runs
    try:
        block_count = max(1, -(-total // block_rows))
        table = torch.randn(block_count * block_rows, projection_dim)
        norms = (table * table).sum(1)
        nearest = torch.rand(block_count, block_rows)
        owner = torch.randint(max(1, count), (block_count, block_rows))
        spread = torch.rand(block_count, block_rows)
        centres = torch.randn(block_count, projection_dim)
        picked = torch.randn(max(1, count // 2), projection_dim)  # on average half the picks are made
        hit = torch.randperm(block_count)[: max(1, block_count // 2)].sort().values
        cells = torch.randperm(table.shape[0])[: max(1, int(0.015 * table.shape[0]))]
        centre = table[0]

        def step():
            reach = torch.linalg.vector_norm(centres - centre, dim=1)
            (reach < 1.0).nonzero()
            to_picked = picked @ centre
            near = nearest.index_select(0, hit)
            bound = to_picked.take(owner.index_select(0, hit) % picked.shape[0])
            (bound <= 4 * near).view(-1).nonzero()
            distances = torch.addmv(norms.index_select(0, cells), table.index_select(0, cells), centre)
            nearest.view(-1).index_copy_(0, cells, distances.abs_())
            near = nearest.index_select(0, hit)
            (spread.index_select(0, hit) + near.sqrt()).amax(1)
            torch.argmax(near.amax(1))

        step()
        started = time.perf_counter()
        for _ in range(10):
            step()
        per_step = (time.perf_counter() - started) / 10
        started = time.perf_counter()
        torch.addmv(norms, table, centre)  # the first step, over every row
        first = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    return first + per_step * count
