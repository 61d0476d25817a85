"""Patch logits -> label map: deciding block by block and chunking must give exactly the full argmax."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from clustvit_ros.runtime.block_argmax import axis_maps, block_argmax, candidates
from clustvit_ros.runtime.label_map import upsample_argmax


def full_scores(logits, padded, model, image):
    """Every class upsampled at once: (C, H, W) at the image's resolution."""
    if padded == model:
        return F.interpolate(logits, size=image, mode="bilinear", align_corners=False)[0]
    full = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)[..., :model[0], :model[1]]
    if model != image:
        full = F.interpolate(full, size=image, mode="bilinear", align_corners=False)
    return full[0]


def full_argmax(logits, padded, model, image):
    """The reference: argmax over every class at full resolution."""
    return full_scores(logits, padded, model, image).argmax(0).to(torch.uint8)


def assert_argmax_up_to_rounding(labels, logits, padded, model, image):
    """Equal to the full argmax, except where two classes tie to within float rounding.

    At an exact tie in real arithmetic the interpolation kernel's rounding (which differs with the
    number of channels it is given) decides, in the reference as much as in the engine.
    """
    scores = full_scores(logits, padded, model, image)
    reference = scores.argmax(0)
    differ = labels.long() != reference
    chosen = scores.gather(0, labels.long()[None])[0]
    best = scores.gather(0, reference[None])[0]
    assert torch.all((best - chosen)[differ] <= 1e-5 * (1 + best.abs()[differ])), "a class that loses by more than rounding won"


@pytest.mark.parametrize("cell", [16, 4])  # patch-level logits, and the fpn head's quarter patches
@pytest.mark.parametrize("padded, model, image", [((64, 64), (64, 64), (48, 80)),
                                                  ((48, 64), (37, 61), (37, 61)),
                                                  ((48, 64), (37, 61), (90, 120))])
def test_chunked_upsample_argmax_equals_the_full_argmax(padded, model, image, cell):
    torch.manual_seed(0)
    logits = torch.randn(1, 150, padded[0] // cell, padded[1] // cell)
    assert torch.equal(upsample_argmax(logits, padded, model, image, max_elements=7 * image[0] * image[1]),
                       full_argmax(logits, padded, model, image))


@settings(max_examples=300, deadline=None)
@given(grid=st.tuples(st.integers(1, 6), st.integers(1, 6)), crop=st.tuples(st.integers(0, 15), st.integers(0, 15)),
       image=st.tuples(st.integers(1, 70), st.integers(1, 70)), classes=st.integers(2, 40),
       spread=st.sampled_from([0.0, 0.5, 4.0]), integer=st.booleans(), seed=st.integers(0, 2**31 - 1),
       chunk=st.integers(1, 9), cell=st.sampled_from([16, 4]))
def test_labels_by_blocks_equal_the_full_argmax(grid, crop, image, classes, spread, integer, seed, chunk,
                                                cell):
    """Scenes where a few classes dominate (pruning bites), near-ties and exact ties (integer logits).
    Logits on the patch grid (16 px a cell) or, as the fpn head gives them, on quarter patches of
    the padded input (4 px a cell: the padding of up to 15 px then covers up to 3 whole cells)."""
    generator = torch.Generator().manual_seed(seed)
    grid = (grid[0] * 16 // cell, grid[1] * 16 // cell)
    logits = torch.randn(1, classes, *grid, generator=generator)
    logits += spread * torch.randn(1, classes, 1, 1, generator=generator)  # some classes far behind
    if integer:
        logits = logits.round()  # many exact ties: the lower class id must win, as argmax does
    padded = (grid[0] * cell, grid[1] * cell)
    model = (padded[0] - min(crop[0], padded[0] - 1), padded[1] - min(crop[1], padded[1] - 1))
    labels = upsample_argmax(logits, padded, model, image, max_elements=chunk * image[0] * image[1],
                             blocks_from=0, blocks_per_cell=0)
    assert_argmax_up_to_rounding(labels, logits, padded, model, image)


@pytest.mark.parametrize("classes, cells, image, by_blocks", [
    (11, (23, 30), (368, 480), True),    # patch logits: 256 pixels a cell
    (11, (92, 120), (368, 480), False),  # the fpn head's quarter patches: 16 pixels a cell
    (11, (92, 120), (736, 960), True),   # ... onto a larger image: 64 pixels a cell
    (150, (92, 120), (368, 480), True),  # ... of many classes, most of which a block drops
])
def test_blocks_are_used_where_a_cell_spreads_over_enough_pixels(classes, cells, image, by_blocks, monkeypatch):
    import clustvit_ros.runtime.label_map as label_map

    calls = []
    monkeypatch.setattr(label_map, "block_argmax", lambda *a, **kw: calls.append(1) or block_argmax(*a, **kw))
    torch.manual_seed(0)
    logits = torch.randn(1, classes, *cells)
    labels = upsample_argmax(logits, (368, 480), (368, 480), image)
    assert calls == ([1] if by_blocks else [])
    assert_argmax_up_to_rounding(labels, logits, (368, 480), (368, 480), image)


def block_classes(logits, padded, model, image):
    """{block (i, j): its candidate classes} for the blocks left with more than one."""
    w = logits.shape[-1]
    found = candidates(logits, *axis_maps(logits.shape[-2:], padded, model, image))
    out = {}
    for cls, block in zip(found.cls.tolist(), found.block.tolist()):
        out.setdefault(divmod(block, w), []).append(cls)
    return out


def test_classes_that_cannot_win_are_dropped_per_block_and_local_winners_are_kept():
    logits = torch.zeros(1, 5, 4, 4)
    logits[0, 0] = 5.0                # wins almost everywhere
    logits[0, 1] = -3.0               # never close: dropped
    logits[0, 2, 2, 2] = 9.0          # wins around one cell only: kept in the 4 blocks that mix it
    logits[0, 3] = 4.0                # second everywhere, never first: dropped
    logits[0, 4, 0, 0] = 5.0          # ties class 0 at one cell: a tie could matter, kept there
    size = (64, 64)
    assert block_classes(logits, size, size, size) == {(0, 0): [0, 4], (1, 1): [0, 2], (1, 2): [0, 2],
                                                       (2, 1): [0, 2], (2, 2): [0, 2]}
    labels = upsample_argmax(logits, size, size, size, blocks_from=0)
    assert set(labels.unique().tolist()) == {0, 2}
    assert torch.equal(labels, full_argmax(logits, size, size, size))


def test_a_class_beaten_on_every_cell_of_a_block_is_dropped_there_even_above_the_floor():
    """A step between two cells (as merging makes): class 2 is above the block's floor but class
    0 beats it on both cells, so it cannot win between them; class 1 can, and is kept."""
    logits = torch.tensor([[4.0, 0.0], [0.0, 4.0], [3.5, -1.0], [2.5, 2.5]]).view(1, 4, 1, 2)
    size = (16, 32)
    assert block_classes(logits, size, size, size) == {(0, 0): [0, 1, 3]}
    labels = upsample_argmax(logits, size, size, size, blocks_from=0)
    assert torch.equal(labels, full_argmax(logits, size, size, size))
    assert 3 in labels.unique().tolist()  # the class second on both cells wins in the middle


def test_a_class_that_wins_only_after_two_resamplings_is_kept():
    """Pad, crop and resize mixes 3x3 cells: a class behind in every 2x2 block can still win.

    Class 1 is below class 0 on cells 0-1 and below class 2 on cells 1-2, yet a pixel mixed from
    the crop on both sides of cell 1 takes class 0's and class 2's cliffs and leaves class 1 first.
    """
    logits = torch.tensor([[1.0, 1.0, -1e4], [0.0, 0.0, 0.0], [-1e4, 1.0, 1.0]]).view(1, 3, 1, 3)
    padded, model, image = (16, 48), (16, 33), (1, 9)
    assert axis_maps((1, 3), padded, model, image)[1].width == 3  # two resamplings mix three cells
    assert 1 in block_classes(logits, padded, model, image)[(0, 0)]
    labels = upsample_argmax(logits, padded, model, image, blocks_from=0, blocks_per_cell=0)
    assert labels.tolist() == [[0, 0, 0, 0, 0, 0, 1, 2, 2]]
    assert torch.equal(labels, full_argmax(logits, padded, model, image))


def test_steps_in_the_logits_leave_few_classes_per_block_and_the_full_argmax():
    """Merged and kept tokens side by side: neighbouring cells with unrelated logits (150
    classes). Each block keeps a handful of its classes, far from all that a cell-wise bound lets
    through, and the labels are the full argmax's."""
    generator = torch.Generator().manual_seed(4)
    a, b = torch.randn(150, generator=generator), torch.randn(150, generator=generator)
    grid = torch.rand(12, 12, generator=generator) < 0.5
    logits = torch.where(grid, a[:, None, None], b[:, None, None])[None]
    logits = logits + 0.05 * torch.randn(logits.shape, generator=generator)
    size = (192, 192)
    per_block = block_classes(logits, size, size, size)
    assert per_block and max(len(v) for v in per_block.values()) <= 12
    labels = upsample_argmax(logits, size, size, size)
    assert torch.equal(labels, full_argmax(logits, size, size, size))


@pytest.mark.parametrize("blocks_from", [0, None])
def test_bfloat16_logits_are_interpolated_in_float32(blocks_from):
    """Interpolated in bf16, values round into ties; the label map upsamples the same logits in float32."""
    torch.manual_seed(1)
    logits = (torch.randn(1, 60, 8, 8) + 3 * torch.randn(1, 60, 1, 1)).to(torch.bfloat16)
    labels = upsample_argmax(logits, (128, 128), (128, 128), (96, 160), blocks_from=blocks_from)
    assert torch.equal(labels, full_argmax(logits.float(), (128, 128), (128, 128), (96, 160)))
    assert not torch.equal(labels, full_argmax(logits, (128, 128), (128, 128), (96, 160)))


def test_above_the_label_map_limit_per_class_work_stays_at_the_limit(monkeypatch):
    """A camera above LABEL_MAP_PIXELS: every per-class interpolation stays within it, whatever the
    class count; the camera's pixels cost one look-up each (nearest from the limited label map)."""
    import clustvit_ros.runtime.label_map as label_map

    limit = label_map.LABEL_MAP_PIXELS
    image = (1500, 2000)  # 3 MP
    assert image[0] * image[1] > limit
    sizes, interpolate = [], F.interpolate

    def recording(*args, **kwargs):
        out = interpolate(*args, **kwargs)
        sizes.append(out.shape)
        return out

    monkeypatch.setattr(F, "interpolate", recording)
    torch.manual_seed(3)
    logits = torch.randn(1, 8, 16, 16) + 4 * torch.randn(1, 8, 1, 1)
    labels = upsample_argmax(logits, (256, 256), (256, 256), image)
    assert labels.shape == image and labels.dtype == torch.uint8
    assert sizes and all(s[-2] * s[-1] <= limit for s in sizes), sizes
    monkeypatch.setattr(F, "interpolate", interpolate)
    exact = full_argmax(logits, (256, 256), (256, 256), image)
    assert (labels == exact).float().mean() > 0.99  # only class boundaries may shift, by < 2 px
