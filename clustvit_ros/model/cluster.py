"""Cluster module, merge decision, mean-merge and Regenerator (docs/model.md, "Architecture").

The algorithm in three pure steps, ToMe style:

* :func:`decide` turns the (B, P, k+1) cluster logits and a :class:`MergeBudget` into a merge
  mask and each token's best cluster (argmax over columns 1..k);
* :func:`merge` builds the short sequence ``[cls, kept tokens in raster order, c_1..c_k]`` (cluster
  means; an empty cluster is a zero token and is still appended) and returns a :class:`MergePlan`;
* :meth:`MergePlan.unmerge` rebuilds the full (B, 1+P, D) sequence after the last block: kept tokens
  go back to their grid positions, each merged token becomes ``R([z_i ; c_hat_j])`` with ``z_i`` its
  own pre-merge feature and ``c_hat_j`` its processed cluster token.

**Departure from the official code.** The official code skips merging for the whole batch when the
batch contains a single distinct cluster id. Here the decision is per image: an image that merges
no token keeps all P tokens (alone it takes the dense path; inside a batch its k cluster slots are
masked out, so its output equals running it alone), and a uniform frame whose tokens all go to one
cluster *is* merged. Batch composition therefore never changes an image's result, and a uniform
scene -- the cheapest one to merge -- gets its compression.

Host synchronisation: everything up to the token counts stays on the device; :func:`merge` reads
the kept count (and used-cluster count) of every image in a single ``tolist()``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .budget import MergeBudget


class ClusterModule(nn.Module):
    """Linear(D -> H_c) -> ReLU -> Linear(H_c -> k+1) on the raw residual stream (no LayerNorm)."""

    def __init__(self, dim: int, hidden: int, k: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, k + 1)

    def forward(self, z: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(z)))


class Regenerator(nn.Module):
    """Linear(2D -> D) -> GELU -> Linear(D -> D); no residual or norm: it replaces the token."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2 * dim, dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def decide(logits: Tensor, budget: MergeBudget) -> tuple[Tensor, Tensor]:
    """(B, P, k+1) logits -> (merge mask (B, P) bool, best cluster 0..k-1 (B, P) long).

    Token i merges iff ``max_{j>=1} L[i,j] - L[i,0] + merge_bias > 0`` and, when the budget caps the
    count below P, its biased margin is among the ``floor(budget * P)`` largest. No host sync.
    """
    logits = logits.detach().float()
    best_value, best = logits[..., 1:].max(dim=-1)
    margin = best_value - logits[..., 0]
    if budget.merge_bias:
        margin = margin + budget.merge_bias
    merge = margin > 0
    cap = budget.cap(logits.shape[1])
    if cap < logits.shape[1]:
        top = margin.topk(cap, dim=1, sorted=False).indices
        merge &= torch.zeros_like(merge).scatter_(1, top, True)
    return merge, best


@dataclass
class MergePlan:
    """What :func:`merge` did to a batch; enough to undo it after the last block.

    ``order`` (B, P): token indices with each image's kept tokens first (raster order), then its
    merged tokens (raster order). ``best`` (B, P): each token's cluster 0..k-1. ``skip``
    (B, P, D): the pre-merge patch features. ``kept``: kept count per image (host ints), and
    ``kept_n`` the same (B,) on the device, so that undoing a batch copies nothing from the host.
    ``key_valid``: the (B, 1+M_max+k) attention key mask, ``None`` when no slot is padding
    (always at batch size 1).
    """

    order: Tensor
    best: Tensor
    skip: Tensor
    kept: list[int]
    kept_n: Tensor
    clusters_used: list[int]
    key_valid: Tensor | None

    def unmerge(self, x: Tensor, regenerator: Regenerator) -> Tensor:
        """(B, 1+M_max+k, D) block output -> the full (B, 1+P, D) sequence, raster order."""
        b, p, d = self.skip.shape
        m_max, m_min = max(self.kept), min(self.kept)
        kept_out = x[:, 1:1 + m_max]
        clusters_out = x[:, 1 + m_max:]
        # Every image's merged tokens lie in order[:, m_min:]; at batch size 1 exactly those.
        merged_idx = self.order[:, m_min:]
        member_of = self.best.gather(1, merged_idx)
        regen = regenerator(torch.cat(
            [_take(self.skip, merged_idx), _take(clusters_out, member_of)], dim=-1)).to(x.dtype)
        if m_max == m_min:
            seq = torch.cat([kept_out, regen], dim=1)
        else:  # slot s of image b holds a kept token iff s < kept[b]
            is_kept = torch.arange(p, device=x.device)[None, :] < self.kept_n[:, None]
            seq = torch.where(is_kept[..., None], _pad_seq(kept_out, 0, p - m_max),
                              _pad_seq(regen, m_min, 0))
        return torch.cat([x[:, :1], _put(seq, self.order)], dim=1)


def merge(x: Tensor, merge_mask: Tensor, best: Tensor, k: int) -> tuple[Tensor, MergePlan] | None:
    """Mean-merge the tokens of ``merge_mask`` into k cluster tokens; ``None`` if no image merges.

    ``x`` is the (B, 1+P, D) sequence entering block ip. Returns the (B, 1+M_max+k, D) sequence and
    its plan. Exactly one device-to-host synchronisation.
    """
    z = x[:, 1:]
    b, p, d = z.shape
    assign = torch.where(merge_mask, best + 1, 0)
    sums = z.new_zeros(b, k + 1, d, dtype=torch.float32).scatter_add_(
        1, assign[..., None].expand(-1, -1, d), z.float())
    counts = torch.zeros(b, k + 1, device=z.device).scatter_add_(
        1, assign, torch.ones(b, p, device=z.device))
    kept_n = p - merge_mask.sum(dim=1)
    used_n = (counts[:, 1:] > 0).sum(dim=1)
    kept, used = torch.stack([kept_n, used_n]).tolist()  # the one host sync
    if min(kept) == p:
        return None
    means = (sums[:, 1:] / counts[:, 1:, None].clamp(min=1)).to(x.dtype)
    order = torch.argsort(merge_mask.to(torch.uint8), dim=1, stable=True)
    m_max = max(kept)
    out = torch.cat([x[:, :1], _take(z, order[:, :m_max]), means], dim=1)
    key_valid = None
    if min(kept) != m_max:  # padded slots; an image that merges nothing also hides its clusters
        slot_valid = torch.arange(m_max, device=x.device)[None, :] < kept_n[:, None]
        cluster_valid = (kept_n < p)[:, None].expand(-1, k)
        key_valid = torch.cat([slot_valid.new_ones(b, 1), slot_valid, cluster_valid], dim=1)
    return out, MergePlan(order, best, z, kept, kept_n, used, key_valid)


def _take(src: Tensor, idx: Tensor) -> Tensor:
    """Per-image row gather: src (B, N, D), idx (B, M) -> (B, M, D)."""
    if src.shape[0] == 1:
        return src[0].index_select(0, idx[0])[None]
    return src.gather(1, idx[..., None].expand(-1, -1, src.shape[-1]))


def _put(seq: Tensor, order: Tensor) -> Tensor:
    """Inverse of ``_take(., order)`` for a permutation: out[b, order[b, s]] = seq[b, s]."""
    out = torch.empty_like(seq)
    if seq.shape[0] == 1:
        return out[0].index_copy_(0, order[0], seq[0])[None]
    return out.scatter_(1, order[..., None].expand(-1, -1, seq.shape[-1]), seq)


def _pad_seq(t: Tensor, before: int, after: int) -> Tensor:
    return torch.nn.functional.pad(t, (0, 0, before, after))
