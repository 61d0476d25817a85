"""The exact argmax of bilinearly upsampled class logits, decided block by block of patch cells.

Every output pixel is a convex mix (bilinear weights, >= 0, summing to 1) of the class logits on a
few neighbouring patch cells: 2 x 2 after one interpolation, up to 3 x 3 after pad, crop and resize.
Pixels are grouped into *blocks*, the cells they mix, and each block keeps only the classes that can
win one of its pixels:

1. a class whose largest value on the block's cells is below the largest minimum (the *floor*) of
   some class is out (a cheap test on the whole (C, h, w) grid);
2. a class that another class beats on every cell of the block is out: the mix keeps that order at
   every pixel. The other classes tried, the *references*, are the floor's class and the winner of
   each cell;
3. so is a class that some mix ``l * a + (1 - l) * b`` of the floor's class and a cell's winner
   beats on every cell: at every pixel that mix beats it, so ``a`` or ``b`` does (in blocks still
   holding 4 or more classes).

A block left with one class takes it everywhere; only the pixels of the other blocks are mixed,
with their own few classes. Tests 2 and 3 are what keep the work small where neighbouring cells
disagree -- a step in the logits, as token merging makes at the border of a merged region: there
test 1 alone leaves dozens of the 150 ADE20K classes in play, test 3 about 1.4 times the classes
that really win a pixel of the block.

The interpolation weights come from :func:`~clustvit_ros.model.pixels.logits_to_pixels` itself
(run on one-hot cells), so every padding, crop and resize case is the same code. Logits are float32
(:mod:`.label_map` converts them); a tie keeps the lower class id. Only a tie to within float
rounding can come out differently from the full argmax (the kernels sum in different orders), which
the tests allow for.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.pixels import logits_to_pixels

ROUNDING_SLACK = 16  # in units of float32's epsilon, relative to the largest logit magnitude
MIX_TEST_FROM = 4  # classes left in a block; with fewer, test 3 costs about what it saves


@dataclass(frozen=True)
class AxisMap:
    """One axis of the interpolation: output index -> the cells it mixes and their weights.

    ``start[o]`` is the first cell output ``o`` mixes and ``weights[o, r]`` the weight of cell
    ``start[o] + r`` (0 beyond the grid); ``weights`` has one more all-zero row, ``len(start)``, for
    padded slots. ``width`` is the most cells one output mixes. The outputs that start at one cell
    are cut into runs of at most ``ceil(outputs / cells)`` (the edge cells also take the clamped
    edge outputs): ``runs`` (G, most) their output indices padded with ``len(start)``,
    ``run_first``/``run_count`` (cells,) each cell's first run and number of runs.
    """

    start: Tensor
    weights: Tensor
    width: int
    runs: Tensor
    run_first: Tensor
    run_count: Tensor


@lru_cache(maxsize=32)
def axis_map(cells: int, padded: int, model: int, out: int, via_padded: bool) -> AxisMap:
    """The weights :func:`logits_to_pixels` gives `cells` patch cells along one axis, for an input
    of `model` pixels padded to `padded`, mapped onto `out` pixels. `via_padded`: the input was
    padded along either axis, so the logits go to the padded size first (on both axes).

    The other axis is one cell wide and stays one pixel wide, which bilinear interpolation maps
    1 -> 1 unchanged; when padded, it is padded to two pixels so the function takes the same path.
    Cached: built as ordinary tensors even when first asked for under ``torch.inference_mode``.
    """
    with torch.inference_mode(False):
        one_hot = torch.eye(cells).view(1, cells, cells, 1)
        mix = logits_to_pixels(one_hot, (padded, 2 if via_padded else 1), (model, 1), (out, 1))[0, :, :, 0].T
        mixed = mix > 0
        start = mixed.byte().max(1).indices
        width = int((cells - 1 - mixed.flip(1).byte().max(1).indices - start).max()) + 1
        index = start[:, None] + torch.arange(width)
        weights = torch.where(index < cells, mix.gather(1, index.clamp(max=cells - 1)), 0.0)
        weights = torch.cat([weights, weights.new_zeros(1, width)])
        runs, run_first, run_count = _runs(start, cells, -(-out // cells))
    return AxisMap(start, weights, width, runs, run_first, run_count)


def _runs(start: Tensor, cells: int, most: int) -> tuple[Tensor, Tensor, Tensor]:
    """The outputs starting at each cell in runs of at most `most` (:class:`AxisMap`)."""
    out = len(start)
    first_out = torch.searchsorted(start, torch.arange(cells))
    size = torch.searchsorted(start, torch.arange(cells), right=True) - first_out
    run_count = -(-size // most)
    run_first = torch.cumsum(run_count, 0) - run_count
    cell = torch.repeat_interleave(torch.arange(cells), run_count)
    offset = (torch.arange(len(cell)) - run_first[cell])[:, None] * most + torch.arange(most)
    runs = torch.where(offset < size[cell, None], first_out[cell, None] + offset, out)
    return runs, run_first, run_count


def axis_maps(cells_hw: tuple[int, int], padded_hw: tuple[int, int], model_hw: tuple[int, int],
              image_hw: tuple[int, int]) -> tuple[AxisMap, AxisMap]:
    """The row and column maps of :func:`logits_to_pixels` for these sizes."""
    via_padded = tuple(padded_hw) != tuple(model_hw)
    return tuple(axis_map(c, p, m, o, via_padded) for c, p, m, o in zip(cells_hw, padded_hw, model_hw, image_hw))


@dataclass(frozen=True)
class Candidates:
    """The (class, block) pairs that may win a pixel, for the blocks with more than one.

    ``cls``/``block`` per pair (block = i * w + j of its first cell), sorted by block and by class
    within one; ``cells`` (N, wy * wx) the class's logits on the block's cells. ``floor_class``
    (h, w) the class of each block's floor: the label of a block with one class.
    """

    cls: Tensor
    block: Tensor
    cells: Tensor
    floor_class: Tensor


def block_argmax(logits: Tensor, rows: AxisMap, cols: AxisMap, max_elements: int = 1 << 22) -> Tensor:
    """(1, C, h, w) float32 logits, C <= 256 -> (H, W) uint8 class ids: the argmax of the bilinear
    mix at every pixel. `rows`/`cols` map the h cells onto H rows and the w cells onto W columns
    (:func:`axis_maps`). At most `max_elements` (pixel, class) values are held at once.
    """
    found = candidates(logits, rows, cols)
    w = logits.shape[-1]
    height, width = len(rows.start), len(cols.start)
    labels = torch.empty(height * width + 1, dtype=torch.uint8, device=logits.device)  # + a padding slot
    image = labels[:-1].view(height, width)
    torch.index_select(found.floor_class.to(torch.uint8).index_select(1, cols.start), 0, rows.start, out=image)
    for ids, cells, block in _buckets(found):
        (y, x), tile_block = _tiles(rows, cols, block // w, block % w)
        _mix_and_pick(labels, ids[tile_block], cells[tile_block], y, x, rows, cols, max_elements)
    return image


def candidates(logits: Tensor, rows: AxisMap, cols: AxisMap) -> Candidates:
    """The classes that may win a pixel of each block of cells (module docstring, tests 1-3)."""
    x = logits[0]
    c, h, w = x.shape
    margin = ROUNDING_SLACK * torch.finfo(x.dtype).eps * (1.0 + float(x.abs().amax()))
    shifts = [(r, t) for r in range(rows.width) for t in range(cols.width)]
    xp = F.pad(x[None], (0, cols.width - 1, 0, rows.width - 1), mode="replicate")[0]  # edge blocks
    high = low = x
    for r, t in shifts[1:]:
        high, low = torch.maximum(high, xp[:, r:r + h, t:t + w]), torch.minimum(low, xp[:, r:r + h, t:t + w])
    floor, floor_class = low.max(0)
    kept = (high >= floor - margin).flatten(1)                                       # test 1, (C, h * w)
    with_pixels = (rows.run_count > 0)[:, None] & (cols.run_count > 0)[None, :]
    blocks = ((kept.sum(0) > 1) & with_pixels.flatten()).nonzero().flatten()        # (B,)
    pair, cls = kept[:, blocks].T.nonzero(as_tuple=True)                             # by block, then class
    i, j = blocks // w, blocks % w
    cell = torch.stack([(i + r).clamp(max=h - 1) * w + (j + t).clamp(max=w - 1) for r, t in shifts], 1)
    references = torch.cat([floor_class.flatten()[blocks, None], x.max(0).indices.flatten()[cell]], 1)
    flat = x.flatten()

    def on_cells(classes: Tensor, cells: Tensor) -> Tensor:  # (n, k) classes on (n, cw) cells -> (cw, k, n)
        index = cells.T[:, None, :] + classes.T[None] * (h * w)
        return flat.index_select(0, index.flatten()).view(index.shape)

    # pairs along the last dimension, the fast one for elementwise work on the CPU
    values = on_cells(cls[:, None], cell.index_select(0, pair))[:, 0]               # (cw, N)
    reference_values = on_cells(references, cell)                                   # (cw, refs, B)
    beaten = ((values[:, None] - reference_values.index_select(2, pair)).amax(0) < -margin).any(0)
    pair, cls, values = pair[~beaten], cls[~beaten], values[:, ~beaten]             # test 2
    many = (torch.bincount(pair, minlength=len(blocks))[pair] >= MIX_TEST_FROM).nonzero().flatten()
    beaten = torch.zeros_like(pair, dtype=torch.bool)
    beaten[many] = _beaten_by_a_mix(values[:, many], reference_values.index_select(2, pair[many]), margin)
    pair, cls, values = pair[~beaten], cls[~beaten], values[:, ~beaten]             # test 3
    several = torch.bincount(pair, minlength=len(blocks))[pair] > 1  # one left: the floor's class
    return Candidates(cls[several], blocks[pair[several]], values[:, several].T, floor_class)


def _beaten_by_a_mix(values: Tensor, references: Tensor, margin: float) -> Tensor:
    """(cw, N) values, (cw, 1 + cw, N) references (the floor's class, then each cell's winner) ->
    (N,) bool: some mix ``l * winner + (1 - l) * floor class`` (0 <= l <= 1) exceeds the values by
    more than `margin` on every cell, so at every pixel one of the two does. (Mixes of two cell
    winners removed 0.5 % more classes on the benchmark scenes, for 2.5 times the work.)"""
    floor = references[:, :1]
    d = references[:, 1:] - floor                                # needs l * d > e on every cell
    e = values[:, None] + margin - floor
    ratio = e / torch.where(d == 0, 1.0, d)
    low = torch.where(d > 0, ratio, torch.where((d == 0) & (e >= 0), torch.inf, -torch.inf)).amax(0)
    high = torch.where(d < 0, ratio, torch.inf).amin(0)
    return (low.clamp(min=0.0) < high.clamp(max=1.0)).any(0)


def _buckets(found: Candidates) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """The blocks grouped by their class count rounded up to a power of two, as (ids (B, K),
    cells (B, K, cw), block (B,)); shorter lists repeat their first class, which changes no
    argmax."""
    block, count = torch.unique_consecutive(found.block, return_counts=True)
    first = torch.cumsum(count, 0) - count
    size = 1 << torch.ceil(torch.log2(count.float())).long()
    for k in size.unique().tolist():
        chosen = (size == k).nonzero().flatten()
        slot = torch.arange(k, device=block.device)
        pair = first[chosen, None] + torch.where(slot < count[chosen, None], slot, 0)  # (B, K)
        yield found.cls[pair], found.cells[pair], block[chosen]


def _tiles(rows: AxisMap, cols: AxisMap, bi: Tensor, bj: Tensor) -> tuple[tuple[Tensor, Tensor], Tensor]:
    """Every (row run, column run) of the blocks (bi, bj): their output indices ((T, ny), (T, nx))
    and, per tile, its block as an index into `bi`."""
    per_block = rows.run_count[bi] * cols.run_count[bj]
    block = torch.repeat_interleave(torch.arange(len(bi), device=bi.device), per_block)
    k = torch.arange(len(block), device=bi.device) - (torch.cumsum(per_block, 0) - per_block)[block]
    across = cols.run_count[bj][block]
    return (rows.runs[rows.run_first[bi][block] + k // across],
            cols.runs[cols.run_first[bj][block] + k % across]), block


def _mix_and_pick(labels: Tensor, ids: Tensor, cells: Tensor, y: Tensor, x: Tensor, rows: AxisMap,
                  cols: AxisMap, max_elements: int) -> None:
    """Mix each tile's classes ``ids`` (T, K) from their ``cells`` (T, K, wy * wx) at its pixels
    (rows `y` (T, ny), columns `x` (T, nx); H or W where padded) and write the winners into
    `labels` (H * W + 1, row-major; the last element takes the padding)."""
    t, k = ids.shape
    ny, nx, wy, wx = y.shape[1], x.shape[1], rows.width, cols.width
    step = max(1, max_elements // (k * ny * nx))
    for s in range(0, t, step):
        ys, xs, n = y[s:s + step], x[s:s + step], len(y[s:s + step])
        # along the columns, then along the rows (the interpolation's own order)
        across = torch.bmm(cells[s:s + step].view(n, k * wy, wx), cols.weights[xs].transpose(1, 2))
        across = across.view(n, k, wy, nx).permute(0, 2, 3, 1).reshape(n, wy, nx * k)
        values = torch.bmm(rows.weights[ys], across).view(n, ny * nx, k)
        best = ids[s:s + step].gather(1, values.max(2).indices).to(torch.uint8)
        height, width = len(rows.start), len(cols.start)
        inside = (ys < height)[:, :, None] & (xs < width)[:, None, :]
        flat = torch.where(inside, ys[:, :, None] * width + xs[:, None, :], height * width)
        labels.index_copy_(0, flat.flatten(), best.flatten())
