"""The transformer blocks as captured CUDA graphs, one per token-count bucket (the `cuda_graphs` option).

On a GPU a frame of a small ViT is a few hundred short kernels, and launching them can cost more than
running them. A CUDA graph replays a captured sequence of kernels with one launch, but only at the
shapes it was captured with, while a merged sequence ``[cls, kept tokens, cluster tokens]`` has a
different length every frame. So its length is rounded up to a *bucket* (:func:`bucket_length`: at
most 1/8 more tokens) and the padding is hidden from attention with a key mask: every real token's
output is the unpadded one's up to float rounding (padded slots are queries whose rows are dropped,
and never keys). Each (blocks, batch, bucket) gets its graph, captured the first time it occurs
(that frame pays a capture: a few forwards of those blocks). The full sequences before merging and of
the dense path have one length per input size and are captured as they are. All graphs share one
memory pool: they never run at the same time, and each output is copied out before the next replay.

The host still reads the token counts once per frame (to pick the bucket); what the graphs remove is
the launch of every kernel. Off the GPU the same padding runs eagerly, which is how the tests check
that buckets change no label.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.segmentor import ClustViT

SMALLEST_STEP = 8
MAX_GRAPHS = 128  # then all are dropped and captured again (input sizes that vary: resize none)


def bucket_length(n: int) -> int:
    """The bucket of an n-token sequence: n rounded up to a multiple of 1/8 of the largest power of
    two <= n (at least :data:`SMALLEST_STEP`), so padding adds at most 1/8 and a ViT at 512 x 512
    (1,024 patch tokens) needs about 60 buckets between 1 and 1,028 tokens."""
    step = max(SMALLEST_STEP, (1 << (n.bit_length() - 1)) // 8)
    return -(-n // step) * step


class BlockGraphs:
    """A :data:`~clustvit_ros.model.segmentor.BlockRunner` for ``model.forward_features``.

    Merged sequences are padded to their bucket; with ``capture`` (a CUDA model) every distinct
    shape runs as a captured CUDA graph, otherwise eagerly.
    """

    def __init__(self, model: ClustViT, capture: bool):
        self.model = model
        self.capture = capture
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, Tensor, Tensor | None, Tensor]] = {}
        self._pool = torch.cuda.graph_pool_handle() if capture else None

    @property
    def graphs(self) -> int:
        """How many graphs have been captured so far."""
        return len(self._graphs)

    def __call__(self, x: Tensor, key_valid: Tensor | None, blocks: range, merged: bool) -> Tensor:
        if not len(blocks):
            return x
        b, n, _ = x.shape
        if merged:
            size = bucket_length(n)
            valid = torch.ones(b, n, dtype=torch.bool, device=x.device) if key_valid is None else key_valid
            x, key_valid = F.pad(x, (0, 0, 0, size - n)), F.pad(valid, (0, size - n))
        out = self._replay(x, key_valid, blocks) if self.capture else self.model.run_blocks(x, key_valid, blocks)
        return out[:, :n]

    def _replay(self, x: Tensor, key_valid: Tensor | None, blocks: range) -> Tensor:
        key = (blocks.start, blocks.stop, tuple(x.shape), x.dtype, key_valid is not None)
        if key not in self._graphs:
            if len(self._graphs) >= MAX_GRAPHS:
                self._graphs.clear()
            self._graphs[key] = self._capture(x, key_valid, blocks)
        graph, static_x, static_valid, static_out = self._graphs[key]
        static_x.copy_(x)
        if static_valid is not None:
            static_valid.copy_(key_valid)
        graph.replay()
        return static_out.clone()  # the next replay of this graph overwrites static_out

    def _capture(self, x: Tensor, key_valid: Tensor | None, blocks: range) -> tuple:
        static_x = x.clone()
        static_valid = None if key_valid is None else key_valid.clone()
        with torch.cuda.device(x.device):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up off the capture: lazy kernel and workspace set-up
                for _ in range(2):
                    self.model.run_blocks(static_x, static_valid, blocks)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                static_out = self.model.run_blocks(static_x, static_valid, blocks)
        return graph, static_x, static_valid, static_out
