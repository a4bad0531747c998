"""Greedy coreset subsampling (k-center greedy) for the PatchCore memory bank.

Roth et al. select the bank by iteratively taking the patch farthest from everything chosen so far, on
features reduced by a random projection (Johnson-Lindenstrauss) so each step is cheap. The result covers
every training patch within the final ``radius``; ``add_normal`` reuses that radius to decide which new
patches the bank still lacks.
"""

from __future__ import annotations

import heapq
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


def random_projection(features: torch.Tensor, dim: int, seed: int,
                      column_scale: torch.Tensor | None = None) -> torch.Tensor:
    """Project rows to ``dim`` dimensions with a seeded Gaussian matrix; identity when already small.

    ``column_scale``: the rows are projected as if each column were first multiplied by its factor. The factors go
    into the matrix (``(x * s) @ M == x @ (s M)``), so no scaled copy of the table is made: on the 300-image line
    that copy was 0.44 GB of the mixed rule's training."""
    if features.shape[1] <= dim:
        return features if column_scale is None else features * column_scale
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(features.shape[1], dim, generator=generator) / dim**0.5
    if column_scale is not None:
        matrix = matrix * column_scale[:, None].to(matrix.dtype)
    return features @ matrix


# Rows per block of the lazy greedy loop. Larger blocks mean fewer, larger matrix products per pick and a
# looser triangle-inequality test; 512 and 1024 measured best on the 300-image line and on bottle (128 took
# 2.5x as long on the line, 2048 1.4x), all on the 2-core AMD EPYC.
_BLOCK_ROWS = 512


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
    column_scale: torch.Tensor | None = None,
) -> Generator[Progress, None, CoresetResult]:
    """Select ``count`` rows by k-center greedy; yields progress, returns a ``CoresetResult``.

    The picks are those of the textbook loop (``reference`` in the tests: every step updates every row's
    distance to its nearest chosen centre and takes the farthest row), up to exact ties and float rounding.
    That loop reads the whole table once per pick, and the bank of 300 images asks for 23,520 picks of
    235,200 rows. Here the work is lazy. Rows sit in blocks of near neighbours; each block keeps its
    largest distance as of the last time it was brought up to date, which stays an upper bound since
    distances only shrink. The next pick is found by taking the block with the largest bound, bringing it up
    to date (one matrix product with the centres chosen since, among those the triangle inequality says
    can reach it), and stopping once its exact largest distance is still at least every other block's
    bound: that row is the farthest of all. Blocks far from where the picks now fall are not touched.

    ``column_scale``: the coreset of the rows with each column multiplied by its factor, without a scaled copy
    (``random_projection``); the radius and the assignment are then of the scaled rows.
    """
    threads = torch.get_num_threads()
    try:
        return (yield from _greedy_coreset(features, count, seed, projection_dim, cancel, report_every, block_rows,
                                           column_scale))
    finally:
        torch.set_num_threads(threads)  # the loop runs on one thread (below)


class _LazyBlocks:
    """The projected rows in blocks, each row's squared distance to its nearest centre as of its block's last
    update, and which centres each block has still to take into account."""

    def __init__(self, reduced: torch.Tensor, count: int, block_rows: int, generator: torch.Generator):
        total, dim = reduced.shape
        order = _blocks_of_neighbours(reduced, block_rows, generator)
        self.block_rows = block_rows
        self.count = -(-total // block_rows)
        # Padding repeats the last row: a repeated row has its original's distance and maps back to it.
        padded = torch.cat([order, order[-1:].expand(self.count * block_rows - total)])
        self.rows_of = padded.reshape(self.count, block_rows)  # original row index of every block cell
        self.rows = reduced[padded].reshape(self.count, block_rows, dim)
        self.position = torch.empty(total, dtype=torch.int64)  # each original row's cell
        self.position[order] = torch.arange(total)
        self.norms = (self.rows * self.rows).sum(2)
        self.centres = self.rows.mean(1)
        self.centre_norms = (self.centres * self.centres).sum(1)
        # |x - g| per row, rounded up; with |x - c| >= |c - g| - |x - g| it rules whole blocks out.
        self.spread = torch.linalg.vector_norm(self.rows - self.centres[:, None, :], dim=2) * (1 + 1e-5)
        # Rounding of the expanded squared distances is bounded by a few float32 ulps of the largest norm;
        # a block is ruled out only when the bound clears its reach by more than that.
        self.distance_slack = (1e-5 * float(self.norms.max()) + 1e-12) ** 0.5
        self.nearest = torch.full((self.count, block_rows), float("inf"))
        self.owner = torch.zeros((self.count, block_rows), dtype=torch.int64)  # which pick is that centre
        self.reach = torch.full((self.count,), float("inf"))  # largest |x - g| + |x - its centre|
        self.bound: list[float] = [float("inf")] * self.count  # largest squared distance, as of the last update
        self.updated_to = [0] * self.count  # picks before this one are taken into account
        # pending[b, s]: pick s may bring a row of block b nearer (one byte per block and pick).
        self.pending = torch.zeros((self.count, count), dtype=torch.bool)
        self.picked = torch.empty(count, dim)
        self.picked_norms = torch.empty(count)

    def row(self, original: int) -> torch.Tensor:
        cell = int(self.position[original])
        return self.rows[cell // self.block_rows, cell % self.block_rows]

    def add_pick(self, step: int, centre: torch.Tensor) -> None:
        norm = centre @ centre
        self.picked[step] = centre
        self.picked_norms[step] = norm
        to_centres = (self.centre_norms - 2 * (self.centres @ centre) + norm).clamp_min_(0).sqrt_()
        # A row can come nearer only if |x - c| < |x - its centre|, and |x - c| >= |c - g| - |x - g|.
        self.pending[:, step] = to_centres < self.reach + self.distance_slack

    def update(self, block: int, picks: int) -> None:
        """Take the pending ones of the first ``picks`` picks into account in ``block``: its bound is then exact."""
        since = self.updated_to[block]
        if since >= picks:
            return
        self.updated_to[block] = picks
        steps = self.pending[block, since:picks].nonzero().squeeze(1).add_(since)
        if not steps.numel():
            return
        # Picks by rows, so that the minimum over picks runs along contiguous rows; |x|^2 is the same for every
        # pick of a row, so it is added after the minimum. Which pick is nearest is asked only of the rows it
        # brought nearer, usually a small share: values alone reduce about twice as fast.
        squared = torch.addmm(self.picked_norms.index_select(0, steps)[:, None],
                              self.picked.index_select(0, steps), self.rows[block].T, alpha=-2.0)
        best = squared.amin(0).add_(self.norms[block]).clamp_min_(0)
        nearest = self.nearest[block]
        closer = (best < nearest).nonzero().squeeze(1)
        if closer.numel():
            which = squared.index_select(1, closer).argmin(0)
            nearest.index_copy_(0, closer, best.index_select(0, closer))
            self.owner[block].index_copy_(0, closer, steps.index_select(0, which))
            self.bound[block] = float(nearest.max())
            self.reach[block] = float((self.spread[block] + nearest.sqrt()).max())


def _farthest_block(blocks: _LazyBlocks, heap: list, picks: int) -> int:
    """The block holding the row farthest from the first ``picks`` picks, brought up to date.

    ``heap`` holds one entry per block, its negated bound; each block taken off is put back with its new one.
    """
    while True:
        _, block = heapq.heappop(heap)
        blocks.update(block, picks)
        heapq.heappush(heap, (-blocks.bound[block], block))
        if heap[0][1] == block or blocks.bound[block] >= -heap[0][0]:
            return block


def _greedy_coreset(features, count, seed, projection_dim, cancel, report_every, block_rows, column_scale):
    total = features.shape[0]
    count = max(1, min(count, total))
    reduced = random_projection(features.float(), projection_dim, seed, column_scale).contiguous()
    generator = torch.Generator().manual_seed(seed)
    first = int(torch.randint(total, (1,), generator=generator))
    blocks = _LazyBlocks(reduced, count, block_rows, generator)
    del reduced  # the blocks hold every row: one table in memory, not two
    # The projection and the blocks above are large products and use every thread. The loop is one thread:
    # every step is a chain of small operations, and OpenMP's barriers between them cost more than a second
    # core gains. ``greedy_coreset`` puts the count back.
    torch.set_num_threads(1)
    chosen = torch.empty(count, dtype=torch.int64)
    chosen[0] = first
    blocks.add_pick(0, blocks.row(first))
    heap = [(-float("inf"), block) for block in range(blocks.count)]  # every block waits for the first pick
    for step in range(1, count + 1):
        block = _farthest_block(blocks, heap, step)
        if step == count:
            break
        cell = int(torch.argmax(blocks.nearest[block]))
        chosen[step] = blocks.rows_of[block, cell]
        blocks.add_pick(step, blocks.rows[block, cell])
        if step % report_every == 0:
            check(cancel)
            yield Progress("coreset", step, count, f"coreset {step}/{count}")
    check(cancel)
    yield Progress("coreset", count, count, f"coreset {count}/{count}")
    # Every block's distances are upper bounds (exact where it was updated since the pick that could change
    # it): each row's owner is a pick within its stored distance, which is what the bank's coverage search
    # needs. The block found last is exact and holds the farthest row: the coverage radius.
    assignment = torch.empty(total, dtype=torch.int64)
    assignment[blocks.rows_of.view(-1)] = blocks.owner.view(-1)  # a padding cell repeats its row's values
    return CoresetResult(chosen, float(blocks.bound[block]) ** 0.5, assignment)


def coreset_pending_bytes(total: int, count: int, block_rows: int = _BLOCK_ROWS) -> int:
    """Memory of the loop's record of which picks each block has still to take into account: a byte per
    block and pick (10.8 MB for the 300-image line's 460 blocks and 23,520 picks)."""
    return -(-total // block_rows) * count


# Blocks of the table that ``coreset_seconds`` times on: 64 MB of 512 x 128 float rows.
_ESTIMATE_TABLE_BLOCKS = 256


def coreset_seconds(total: int, count: int, projection_dim: int = 128, block_rows: int = _BLOCK_ROWS) -> float:
    """About how long ``greedy_coreset`` takes to pick ``count`` of ``total`` rows on this machine.

    The operations of one pick are timed on a table of the real size with the work a pick does on real patch
    tables, whatever the data here: 2.6 block updates of 512 rows, which bring about 6 % of their rows
    nearer, against about one centre per 530 rows of the table in all, from 40 to 240. Counted with the
    default mixed rule's half coresets: 39 centres a pick on bottle (26,656 rows), 119 on KolektorSDD
    (62,944), 235 on magnetic tile (125,440), with 2.5-2.8 updates; 213 on the 300-image line (235,200).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the loop runs
    try:
        block_count = max(1, -(-total // block_rows))
        centres_per_pick = min(240.0, max(40.0, total / 530))
        updates_per_pick = 2.6
        per_update = max(1, round(centres_per_pick / updates_per_pick))
        # The table visited block by block as the loop does, so that memory traffic is real: at its real size
        # up to 64 MB (well past any cache), no more, so that the estimate of a huge tiled set stays light.
        table_blocks = min(block_count, _ESTIMATE_TABLE_BLOCKS)
        table = torch.rand(table_blocks, block_rows, projection_dim)
        table_norms = (table * table).sum(2)
        picked = torch.rand(count, projection_dim)
        picked_norms = (picked * picked).sum(1)
        centres = torch.rand(block_count, projection_dim)
        nearest = torch.rand(table_blocks, block_rows)
        brought_nearer = torch.arange(0, block_rows, 16)
        pending = torch.zeros(block_count, min(count, max(1, (64 << 20) // block_count)), dtype=torch.bool)
        generator = torch.Generator().manual_seed(0)
        visits = torch.randint(table_blocks, (64,), generator=generator).tolist()
        steps = torch.randint(count, (64, per_update), generator=generator).sort(1).values
        heap = [(-float(b), b) for b in range(block_count)]
        heapq.heapify(heap)

        def update(visit):  # the operations of ``_LazyBlocks.update`` and ``_farthest_block``, in order
            block = visits[visit]
            pending[block, : pending.shape[1] // 2].nonzero().squeeze(1)
            chosen = steps[visit]
            squared = torch.addmm(picked_norms.index_select(0, chosen)[:, None], picked.index_select(0, chosen),
                                  table[block].T, alpha=-2.0)
            best = squared.amin(0).add_(table_norms[block]).clamp_min_(0)
            (best < nearest[block]).nonzero().squeeze(1)
            which = squared.index_select(1, brought_nearer).argmin(0)
            nearest[block].index_copy_(0, brought_nearer, best.index_select(0, brought_nearer))
            chosen.index_select(0, which)
            float(nearest[block].max())
            float((nearest[block] + nearest[block].sqrt()).max())
            heapq.heappush(heap, heapq.heappop(heap))

        def add_pick(visit):
            pending[:, visit % pending.shape[1]] = (centres @ table[visits[visit], 0]).sqrt_() < 1.0

        def timed(operation, repeats=64):
            operation(0)
            started = time.perf_counter()
            for visit in range(repeats):
                operation(visit)
            return (time.perf_counter() - started) / repeats

        per_pick = updates_per_pick * timed(update) + timed(add_pick)
    finally:
        torch.set_num_threads(threads)
    return per_pick * count
