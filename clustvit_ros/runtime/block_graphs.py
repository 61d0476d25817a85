"""The transformer blocks as captured CUDA graphs, one per token-count bucket (the `cuda_graphs` option).

On a GPU a frame of a small ViT is a few hundred short kernels, and launching them can cost more than
running them. A CUDA graph replays a captured sequence of kernels with one launch, but only at the
shapes it was captured with, while a merged sequence ``[cls, kept tokens, cluster tokens]`` has a
different length every frame. So its length is rounded up to a *bucket* (:func:`bucket_length`: at
most 1/8 more tokens) and the padding is hidden from attention with a key mask: every real token's
output is the unpadded one's up to float rounding (padded slots are queries whose rows are dropped,
and never keys). The padded slots are computed all the same: :func:`padded_gflops` counts them.

Captures happen all at once, on the first frame of an input size (the node's warm-up frame): every
graph a frame of that size can replay (the full sequence before merging and on the dense path, and
every bucket a merged sequence can fall in: 44 graphs for a ViT at 512 x 512). A capture synchronises
the device and empties the allocator's cache, so no later frame pays one. Each graph reads its input
from, and writes its output to, one buffer per span of blocks that is allocated outside the graphs'
shared memory pool and that the graph sees a prefix of; what the blocks allocate inside is pool
memory that every graph reuses, since graphs never run at the same time and each output is copied
out right after its replay.

A lock serialises capture, replay and :meth:`BlockGraphs.close`, so a close from another thread waits
for a capture instead of breaking it; captures use the ``thread_local`` error mode, so CUDA calls
that other threads make meanwhile (another engine, a cache release) do not invalidate them either.
The captures of a process run one at a time on one stream per device, each warmed up on that
stream first. After close, and for a shape no capture covers, the same padded blocks run eagerly,
which is also how the tests check on the CPU that buckets change no label.

The host still reads the token counts once per frame (to pick the bucket); what the graphs remove is
the launch of every kernel.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.configs import ClustViTConfig
from ..model.flops import block_flops, flop_terms
from ..model.segmentor import ClustViT, TokenStats

SMALLEST_STEP = 8
MAX_GRAPHS = 128  # then all are dropped before the next input size is captured (resize none: many sizes)
CAPTURE_ERROR_MODE = "thread_local"
WARMUP_RUNS = 2  # eager runs of each shape on the capture's stream before its capture (lazy set-up)


def bucket_length(n: int) -> int:
    """The bucket of an n-token sequence: n rounded up to a multiple of 1/8 of the largest power of
    two <= n (at least :data:`SMALLEST_STEP`), so padding adds at most 1/8 and a ViT at 512 x 512
    (1,024 patch tokens) needs 41 buckets for its merged sequences (:func:`merged_buckets`)."""
    step = max(SMALLEST_STEP, (1 << (n.bit_length() - 1)) // 8)
    return -(-n // step) * step


def merged_buckets(patch_tokens: int, k: int) -> list[int]:
    """Every bucket a merged sequence ``[cls, M kept slots, k clusters]`` of images of `patch_tokens`
    tokens can fall in, ascending: 0 <= M <= patch_tokens (in a batch, an image that merges nothing
    keeps all its tokens beside one that merges)."""
    return sorted({bucket_length(n) for n in range(1 + k, patch_tokens + k + 2)})


def padded_gflops(config: ClustViTConfig, stats: TokenStats) -> float:
    """GFLOPs of a forward whose merged sequences ran padded to their buckets (``cuda_graphs``): as
    :func:`~clustvit_ros.model.flops.frame_gflops`, with the blocks after ``ip`` of each merged
    image on its bucket's length, padded slots included (each image counted as if it ran alone)."""
    total = 0
    for kept in stats.kept_tokens:
        terms = flop_terms(config, stats.grid, kept, stats.cluster_run)
        if kept < stats.patch_tokens:
            terms["blocks_merged"] = (config.depth - config.ip) * block_flops(
                bucket_length(1 + kept + config.k), config.embed_dim, config.mlp_hidden)
        total += sum(terms.values())
    return total / 1e9


@dataclass
class _Captured:
    """One captured graph and the prefixes of its span's buffers that it reads and writes."""

    graph: torch.cuda.CUDAGraph
    x: Tensor
    key_valid: Tensor | None
    out: Tensor

    def run(self, x: Tensor, key_valid: Tensor | None) -> Tensor:
        self.x.copy_(x)
        if self.key_valid is not None:
            self.key_valid.copy_(key_valid)
        self.graph.replay()
        return self.out.clone()  # the next replay of a graph of this span overwrites it


class BlockGraphs:
    """A :data:`~clustvit_ros.model.segmentor.BlockRunner` for ``model.forward_features``.

    Merged sequences are padded to their bucket; with ``capture`` (a CUDA model) every shape runs as a
    captured CUDA graph, otherwise eagerly.
    """

    def __init__(self, model: ClustViT, capture: bool):
        self.model = model
        self.capture = capture
        self._graphs: dict[tuple, _Captured] = {}
        self._prepared: set[tuple] = set()
        self._pool = torch.cuda.graph_pool_handle() if capture else None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def graphs(self) -> int:
        """How many graphs are captured."""
        return len(self._graphs)

    def __call__(self, x: Tensor, key_valid: Tensor | None, span: range, merged: bool) -> Tensor:
        b, n, _ = x.shape
        if merged and len(span):
            size = bucket_length(n)
            valid = torch.ones(b, n, dtype=torch.bool, device=x.device) if key_valid is None else key_valid
            x, key_valid = F.pad(x, (0, 0, 0, size - n)), F.pad(valid, (0, size - n))
        if self.capture:
            with self._lock:
                if not self._closed:
                    if not merged:  # a frame's first call has the full length: its input size
                        self._prepare(b, n, x.dtype, x.device)
                    captured = self._graphs.get(_key(span, x, key_valid))
                    if captured is not None:
                        return captured.run(x, key_valid)[:, :n]
        return self.model.run_blocks(x, key_valid, span)[:, :n]

    def close(self) -> None:
        """Drop every graph and buffer (after a capture or replay in flight on another thread); the
        blocks run eagerly from then on, so a frame still running finishes."""
        with self._lock:
            self._closed = True
            self._graphs.clear()
            self._prepared.clear()
            self._pool = None

    def _prepare(self, batch: int, full: int, dtype: torch.dtype, device: torch.device) -> None:
        """Capture every graph a batch of images of ``full - 1`` patch tokens can replay."""
        if (batch, full, dtype) in self._prepared:
            return
        c = self.model.config
        plan: dict[range, list[tuple[int, bool]]] = {range(0, c.depth): [(full, False)]}
        if self.model.cluster is not None:
            plan.setdefault(range(0, c.ip), []).append((full, False))
            plan.setdefault(range(c.ip, c.depth), []).extend(
                [(full, False)] + [(n, True) for n in merged_buckets(full - 1, c.k)])
        plan = {span: list(dict.fromkeys(shapes)) for span, shapes in plan.items() if len(span)}
        if len(self._graphs) + sum(map(len, plan.values())) > MAX_GRAPHS:
            self._graphs.clear()
            self._prepared.clear()
        for span, shapes in plan.items():
            longest = max(n for n, _ in shapes)
            x_buf = torch.zeros(batch, longest, c.embed_dim, dtype=dtype, device=device)
            valid_buf = torch.ones(batch, longest, dtype=torch.bool, device=device)
            out_buf = torch.empty(batch, longest, c.embed_dim, dtype=dtype, device=device)
            for n, masked in shapes:
                x, valid, out = x_buf[:, :n], valid_buf[:, :n] if masked else None, out_buf[:, :n]
                self._graphs[_key(span, x, valid)] = self._capture(span, x, valid, out)
        self._prepared.add((batch, full, dtype))

    def _capture(self, span: range, x: Tensor, key_valid: Tensor | None, out: Tensor) -> _Captured:
        with _CAPTURE_LOCK, torch.cuda.device(x.device):
            stream = _capture_stream(x.device)
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):  # warm-up on the capture's stream: lazy set-up, cuBLAS workspace
                for _ in range(WARMUP_RUNS):
                    self.model.run_blocks(x, key_valid, span)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool, stream=stream, capture_error_mode=CAPTURE_ERROR_MODE):
                out.copy_(self.model.run_blocks(x, key_valid, span))
        return _Captured(graph, x, key_valid, out)


_CAPTURE_LOCK = threading.Lock()  # captures in a process share their stream: one at a time
_CAPTURE_STREAMS: dict[int, torch.cuda.Stream] = {}


def _capture_stream(device: torch.device) -> torch.cuda.Stream:
    """The one stream every capture on `device` warms up and records on. One per device for the whole
    process: cuBLAS keeps a workspace for every stream it has run on until the process ends, and a
    workspace first made during a capture would come from the graphs' pool and pin it."""
    if device.index not in _CAPTURE_STREAMS:
        _CAPTURE_STREAMS[device.index] = torch.cuda.Stream(device)
    return _CAPTURE_STREAMS[device.index]


def _key(span: range, x: Tensor, key_valid: Tensor | None) -> tuple:
    return span.start, span.stop, tuple(x.shape), x.dtype, key_valid is not None
