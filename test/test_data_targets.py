"""Pseudo-cluster targets (docs/model.md) on hand-made masks and against a loop reference."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clustvit_ros.data.targets import pseudo_cluster_targets

PS = 4  # small patches keep the hand-made masks readable


def grid(patch_labels, ps=PS):
    """(B, hp, wp) patch labels -> pure (B, hp*ps, wp*ps) mask."""
    t = torch.as_tensor(patch_labels, dtype=torch.long)
    return t.repeat_interleave(ps, dim=-2).repeat_interleave(ps, dim=-1)


def reference(masks: np.ndarray, k: int, ps: int, ignore: int, purity: float) -> np.ndarray:
    """Straightforward loop implementation of the spec (lower class id wins ties)."""
    b, h, w = masks.shape
    out = np.zeros((b, h // ps, w // ps), np.int64)
    need = max(1, int(np.ceil(purity * ps * ps - 1e-9)))
    for n in range(b):
        labels = {}
        for r in range(h // ps):
            for c in range(w // ps):
                vals, counts = np.unique(masks[n, r * ps:(r + 1) * ps, c * ps:(c + 1) * ps],
                                         return_counts=True)
                best = max(range(len(vals)), key=lambda i: (counts[i], -vals[i]))
                if counts[best] >= need and vals[best] != ignore:
                    labels[(r, c)] = int(vals[best])
        freq = {}
        for v in labels.values():
            freq[v] = freq.get(v, 0) + 1
        ranked = sorted(freq, key=lambda v: (-freq[v], v))[:k]
        rank = {v: i + 1 for i, v in enumerate(ranked)}
        for (r, c), v in labels.items():
            out[n, r, c] = rank.get(v, 0)
    return out


def test_mixed_patch_is_zero_and_rank_order():
    masks = grid([[[1, 1], [1, 2]]])
    masks[0, 0, PS] = 2  # patch (0, 1) now mixed
    out = pseudo_cluster_targets(masks, k=2, patch_size=PS)
    assert out.dtype == torch.long and out.shape == (1, 2, 2)
    # class 1 has 2 pure patches (rank 1), class 2 has 1 (rank 2), the mixed patch is 0.
    assert out.tolist() == [[[1, 0], [1, 2]]]


def test_ignore_patches_are_zero_and_not_ranked():
    masks = grid([[[255, 255, 255], [255, 5, 255]]])
    out = pseudo_cluster_targets(masks, k=3, patch_size=PS)
    assert out.tolist() == [[[0, 0, 0], [0, 1, 0]]]
    # A custom ignore index behaves the same; 255 is then an ordinary class.
    out = pseudo_cluster_targets(masks, k=3, patch_size=PS, ignore_index=5)
    assert out.tolist() == [[[1, 1, 1], [1, 0, 1]]]


def test_topk_cutoff_and_ranks_by_frequency():
    masks = grid([[[3, 3, 3, 3], [1, 1, 7, 0]]])
    out = pseudo_cluster_targets(masks, k=2, patch_size=PS)
    # counts: 3 -> 4, 1 -> 2, 7 -> 1, 0 -> 1; k=2 keeps 3 (1) and 1 (2).
    assert out.tolist() == [[[1, 1, 1, 1], [2, 2, 0, 0]]]


def test_ties_go_to_lower_class_id():
    masks = grid([[[4, 4, 2, 2]]])
    assert pseudo_cluster_targets(masks, k=1, patch_size=PS).tolist() == [[[0, 0, 1, 1]]]
    assert pseudo_cluster_targets(masks, k=2, patch_size=PS).tolist() == [[[2, 2, 1, 1]]]


def test_k_larger_than_classes_present():
    masks = grid([[[9, 9, 4], [4, 4, 255]]])
    out = pseudo_cluster_targets(masks, k=10, patch_size=PS)
    assert out.tolist() == [[[2, 2, 1], [1, 1, 0]]]
    assert int(out.max()) == 2


def test_each_image_ranked_independently():
    masks = grid([[[1, 1, 1, 2]], [[1, 2, 2, 2]]])
    out = pseudo_cluster_targets(masks, k=2, patch_size=PS)
    assert out.tolist() == [[[1, 1, 1, 2]], [[2, 1, 1, 1]]]


def test_purity_below_one_uses_majority():
    masks = grid([[[1, 3]]])
    masks[0, :3, 0] = 2  # patch 0: 13/16 of class 1, 3/16 of class 2
    assert pseudo_cluster_targets(masks, k=2, patch_size=PS).tolist() == [[[0, 1]]]
    # 1 and 3 now have one patch each: the tie goes to the lower id.
    assert pseudo_cluster_targets(masks, k=2, patch_size=PS, purity=0.8).tolist() == [[[1, 2]]]
    assert pseudo_cluster_targets(masks, k=2, patch_size=PS, purity=0.9).tolist() == [[[0, 1]]]
    # Majority ignore -> 0 even when it is "pure enough".
    masks = grid([[[255, 3]]])
    masks[0, 0, 0] = 3
    assert pseudo_cluster_targets(masks, k=2, patch_size=PS, purity=0.5).tolist() == [[[0, 1]]]
    # 50/50 patch at purity 0.5: the lower id is its label.
    masks = grid([[[6, 1]]])
    masks[0, :, 2:4] = 4
    assert pseudo_cluster_targets(masks, k=3, patch_size=PS, purity=0.5).tolist() == [[[2, 1]]]


def test_default_patch_16_and_dtypes():
    masks = torch.zeros(2, 32, 48, dtype=torch.uint8)
    masks[:, :16, :16] = 7
    out = pseudo_cluster_targets(masks, k=3)
    assert out.shape == (2, 2, 3) and out.dtype == torch.long and out.device == masks.device
    assert out[0].tolist() == [[2, 1, 1], [1, 1, 1]]


@pytest.mark.parametrize("shape", [(1, 17, 16), (1, 16, 20)])
def test_size_must_be_multiple_of_patch(shape):
    with pytest.raises(ValueError):
        pseudo_cluster_targets(torch.zeros(shape, dtype=torch.long), k=2)


def test_bad_arguments():
    with pytest.raises(TypeError):
        pseudo_cluster_targets(torch.zeros(1, 16, 16), k=2)
    with pytest.raises(ValueError):
        pseudo_cluster_targets(torch.zeros(16, 16, dtype=torch.long), k=2)
    with pytest.raises(ValueError):
        pseudo_cluster_targets(torch.zeros(1, 16, 16, dtype=torch.long), k=0)
    with pytest.raises(ValueError):
        pseudo_cluster_targets(torch.zeros(1, 16, 16, dtype=torch.long), k=1, purity=0.0)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 5),
       purity=st.sampled_from([1.0, 0.75, 0.5, 0.3]), ncls=st.integers(1, 5))
def test_matches_loop_reference(seed, k, purity, ncls):
    rng = np.random.default_rng(seed)
    b, hp, wp, ps = 2, 3, 4, 4
    # Mostly-pure patches with some noise, so every branch (pure, mixed, ignore) is exercised.
    base = rng.integers(0, ncls, (b, hp, wp))
    base[rng.random((b, hp, wp)) < 0.15] = 255
    masks = base.repeat(ps, 1).repeat(ps, 2)
    noise = rng.random(masks.shape) < 0.04
    masks[noise] = rng.integers(0, ncls, int(noise.sum()))
    out = pseudo_cluster_targets(torch.from_numpy(masks), k=k, patch_size=ps, purity=purity)
    np.testing.assert_array_equal(out.numpy(), reference(masks, k, ps, 255, purity))


@pytest.mark.parametrize("offset", [-3, 40000])
def test_large_or_negative_ids_take_the_unique_path(offset):
    rng = np.random.default_rng(offset & 0xFFFF)
    base = rng.integers(0, 4, (2, 3, 4)) + offset
    masks = base.repeat(4, 1).repeat(4, 2)
    masks[rng.random(masks.shape) < 0.05] = offset + 1
    for purity in (1.0, 0.6):
        out = pseudo_cluster_targets(torch.from_numpy(masks), k=2, patch_size=4, purity=purity)
        np.testing.assert_array_equal(out.numpy(), reference(masks, 2, 4, 255, purity))
