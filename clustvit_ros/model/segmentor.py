"""ClustViT: the ViT encoder with the Cluster module at block ``ip``, the Regenerator and a head.

Input sizes: any H x W. ``forward`` pads to whole patches after normalisation and maps the logits
back onto the H x W pixels (:mod:`.pixels`, shared with the engine). Padded patches are ordinary
tokens: they count in P and in the GFLOPs, and can merge like any other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

from torch import Tensor, nn

from .budget import MergeBudget
from .cluster import ClusterModule, MergePlan, Regenerator, decide, merge
from .configs import ClustViTConfig
from .fpn_head import FPNHead
from .heads import LinearHead, MaskTransformerHead
from .pixels import Normalize, logits_to_pixels, pad_to_patches
from .vit import ConvStem, VisionTransformer, stem_channels


@dataclass
class TokenStats:
    """What one forward actually used; per-image lists, one entry per batch element.

    ``kept_tokens`` M and ``merged_tokens`` P - M per image; ``clusters_used`` the non-empty
    clusters; ``dense`` True where the image merged nothing (no cluster tokens, no Regenerator);
    ``cluster_run`` whether the Cluster module ran at all (it costs FLOPs even when nothing
    merges); ``grid`` the (h, w) patch grid, so ``patch_tokens == h * w``.
    """

    patch_tokens: int
    kept_tokens: list[int]
    merged_tokens: list[int]
    clusters_used: list[int]
    dense: list[bool]
    grid: tuple[int, int]
    cluster_run: bool

    @classmethod
    def all_dense(cls, batch: int, grid: tuple[int, int], cluster_run: bool) -> "TokenStats":
        p = grid[0] * grid[1]
        return cls(p, [p] * batch, [0] * batch, [0] * batch, [True] * batch, grid, cluster_run)


class Features(NamedTuple):
    """``forward_features`` result: final-normed (B, P, D) patch tokens on an (h, w) grid, and the
    conv stem's feature maps the head fuses (the ``fpn`` head; empty for the others)."""

    tokens: Tensor
    grid: tuple[int, int]
    cluster_logits: Tensor | None
    stats: TokenStats
    skips: tuple[Tensor, ...] = ()


BlockRunner = Callable[[Tensor, "Tensor | None", range, bool], Tensor]
"""Runs the encoder blocks of a ``span`` (a range of block indices) on (B, N, D) tokens with an optional (B, N) key mask;
the bool is True for a merged sequence, whose length N changes from frame to frame."""


class SegOutput(NamedTuple):
    """``logits`` (B, C, H, W) at input size; ``cluster_logits`` (B, P, k+1) or None if not run."""

    logits: Tensor
    cluster_logits: Tensor | None
    stats: TokenStats


class ClustViT(nn.Module):
    """ClustViT segmentor (``config.k == 0``: the plain ViT baseline with the same head).

    ``forward(images, budget)`` takes already normalised (B, 3, H, W) images (see
    :meth:`normalize`) and a per-call :class:`MergeBudget` (default: the paper's behaviour).
    Gradients of the segmentation loss reach the backbone (through the mean-merge) and the
    Regenerator; the Cluster module learns only from a loss on ``cluster_logits``.
    """

    def __init__(self, config: ClustViTConfig) -> None:
        super().__init__()
        c = self.config = config
        self.encoder = VisionTransformer(c.patch_size, c.embed_dim, c.depth, c.num_heads,
                                         c.mlp_hidden, c.grid, c.patch_bias, c.drop_path,
                                         c.stem)
        self.cluster = ClusterModule(c.embed_dim, c.cluster_hidden, c.k) if c.k else None
        self.regenerator = Regenerator(c.embed_dim) if c.k else None
        self.skips = 0  # how many of the conv stem's feature maps the head fuses
        if c.head == "mask":
            self.head = MaskTransformerHead(c.embed_dim, c.num_heads, c.num_classes,
                                            c.head_layers, c.drop_path)
        elif c.head == "fpn":
            quarter, half = stem_channels(c.patch_size, c.embed_dim)[-3:-1]
            self.head = FPNHead(c.embed_dim, (quarter, half), c.num_classes, c.fpn_channels)
            self.skips = 2
        else:
            self.head = LinearHead(c.embed_dim, c.num_classes)

    def normalize(self, rgb: Tensor) -> Tensor:
        """(B, 3, H, W) RGB in 0..255 (any real dtype) -> normalised float input for ``forward``."""
        return Normalize(self.config, rgb.device)(rgb)

    def fold_batchnorm(self) -> "ClustViT":
        """For inference: fold the BatchNorms of the conv stem and the fpn head into their convs
        (eval mode; a no-op for the plain patch embedding and the other heads). Returns the model."""
        if isinstance(self.encoder.patch_embed, ConvStem):
            self.encoder.patch_embed.fold_batchnorm()
        if isinstance(self.head, FPNHead):
            self.head.fold_batchnorm()
        return self

    def forward_features(self, images: Tensor, budget: MergeBudget | None = None,
                         block_runner: BlockRunner | None = None) -> Features:
        """Encoder only; H and W must be multiples of the patch size (``forward`` pads).

        ``block_runner`` runs the transformer blocks (default :meth:`run_blocks`): the runtime passes one
        that replays captured CUDA graphs.
        """
        ps = self.config.patch_size
        if images.shape[-2] % ps or images.shape[-1] % ps:
            raise ValueError(f"forward_features needs H, W multiples of {ps}, got "
                             f"{tuple(images.shape[-2:])}; use forward() to pad")
        budget = budget or MergeBudget()
        run = block_runner or self.run_blocks
        x, grid, skips = self.encoder.embed(images, self.skips)
        run_cluster = self.cluster is not None and budget.cap(grid[0] * grid[1]) > 0
        depth, ip = self.config.depth, self.config.ip if run_cluster else self.config.depth
        logits = plan = None
        x = run(x, None, range(0, ip), False)
        if run_cluster:
            logits = self.cluster(x[:, 1:])
            merged = merge(x, *decide(logits, budget), self.config.k)
            if merged is not None:
                x, plan = merged
            x = run(x, plan.key_valid if plan else None, range(ip, depth), plan is not None)
        if plan is not None:
            x = plan.unmerge(x, self.regenerator)
        x = self.encoder.norm(x)
        return Features(x[:, 1:], grid, logits, self._stats(plan, x.shape[0], grid, run_cluster),
                        skips)

    def run_blocks(self, x: Tensor, key_valid: Tensor | None, span: range, merged: bool = False) -> Tensor:
        """The encoder blocks of `span` on (B, N, D) tokens (:data:`BlockRunner`)."""
        for i in span:
            x = self.encoder.blocks[i](x, key_valid)
        return x

    def forward_head(self, tokens: Tensor, grid: tuple[int, int],
                     skips: tuple[Tensor, ...] = ()) -> Tensor:
        """(B, P, D) patch tokens (and ``Features.skips``) -> (B, C, h', w') logits, one cell per
        ``config.logit_stride`` pixels of the padded input: the patch grid, 4x finer for fpn."""
        if isinstance(self.head, FPNHead):
            return self.head(tokens, grid, skips)
        return self.head(tokens, grid)

    def pad_to_patches(self, images: Tensor) -> Tensor:
        """Zero-pad (B, 3, H, W) normalised images at the bottom/right to multiples of the patch size."""
        return pad_to_patches(images, self.config.patch_size)

    def forward(self, images: Tensor, budget: MergeBudget | None = None) -> SegOutput:
        h, w = images.shape[-2:]
        padded = self.pad_to_patches(images)
        feats = self.forward_features(padded, budget)
        logits = self.forward_head(feats.tokens, feats.grid, feats.skips)
        logits = logits_to_pixels(logits, padded.shape[-2:], (h, w))
        return SegOutput(logits, feats.cluster_logits, feats.stats)

    @staticmethod
    def _stats(plan: MergePlan | None, batch: int, grid: tuple[int, int],
               cluster_run: bool) -> TokenStats:
        if plan is None:
            return TokenStats.all_dense(batch, grid, cluster_run)
        p = grid[0] * grid[1]
        return TokenStats(p, list(plan.kept), [p - m for m in plan.kept],
                          list(plan.clusters_used), [m == p for m in plan.kept], grid, cluster_run)
