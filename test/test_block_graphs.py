"""Token-count buckets and CUDA graphs (`cuda_graphs`): padding a merged sequence to its bucket must
change no output beyond float rounding, and the GFLOPs count the padding; the graphs are all captured
on the first frame of an input size, a close waits for a capture in flight, and on a GPU replaying
them gives exactly the labels of the same padded blocks run eagerly."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from clustvit_ros.model import ClustViT, ClustViTConfig, MergeBudget, frame_gflops, save_checkpoint
from clustvit_ros.model.flops import block_flops
from clustvit_ros.runtime.block_graphs import BlockGraphs, bucket_length, merged_buckets, padded_gflops
from clustvit_ros.runtime.engine import Engine

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the CUDA-graph path)")


def small_model(k: int = 3, ip: int = 1) -> ClustViT:
    torch.manual_seed(0)
    cfg = ClustViTConfig(embed_dim=64, depth=4, num_heads=4, mlp_hidden=128, k=k, ip=ip, cluster_hidden=64,
                         num_classes=20, head="mask", img_size=(96, 128))
    return ClustViT(cfg).eval()


def test_a_bucket_holds_the_sequence_with_at_most_an_eighth_more_tokens():
    lengths = range(1, 5000)
    buckets = [bucket_length(n) for n in lengths]
    assert all(n <= b <= max(n + 7, n * 9 // 8) for n, b in zip(lengths, buckets))
    assert buckets == sorted(buckets)  # longer never gets a shorter bucket
    assert len(set(b for n, b in zip(lengths, buckets) if n <= 1028)) <= 64  # ViT at 512: 1,028 at most


@pytest.mark.parametrize("budget", [MergeBudget(0.0), MergeBudget(1.0), MergeBudget(0.3, 50.0),
                                    MergeBudget(0.77, 50.0), MergeBudget(1.0, 50.0)])
@pytest.mark.parametrize("ip", [0, 1])
@torch.inference_mode()
def test_padding_to_a_bucket_changes_no_output(budget, ip):
    model = small_model(ip=ip)
    torch.manual_seed(1)
    images = torch.randn(1, 3, 96, 128)
    plain = model.forward_features(images, budget)
    bucketed = model.forward_features(images, budget, BlockGraphs(model, capture=False))
    assert bucketed.stats == plain.stats
    torch.testing.assert_close(bucketed.tokens, plain.tokens, rtol=1e-4, atol=1e-5)
    logits = model.forward_head(plain.tokens, plain.grid)
    assert torch.equal(model.forward_head(bucketed.tokens, bucketed.grid).argmax(1), logits.argmax(1))


@torch.inference_mode()
def test_a_batch_with_padded_slots_keeps_its_mask_inside_the_bucket():
    """Images that keep different numbers of tokens: their own padding and the bucket's are both hidden."""
    model = small_model()
    torch.manual_seed(2)
    images = torch.randn(3, 3, 96, 128) * torch.tensor([10.0, 1.0, 0.05]).view(3, 1, 1, 1)
    plain = model.forward_features(images, MergeBudget(1.0, -0.5))
    assert len(set(plain.stats.kept_tokens)) == 3  # one of them keeps all 48: its clusters are masked too
    bucketed = model.forward_features(images, MergeBudget(1.0, -0.5), BlockGraphs(model, capture=False))
    assert bucketed.stats == plain.stats
    torch.testing.assert_close(bucketed.tokens, plain.tokens, rtol=1e-4, atol=1e-5)


def test_cuda_graphs_without_a_gpu_warn_and_run_plainly(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(small_model(), path)
    engine = Engine(path, device="cpu", cuda_graphs=True)
    assert engine.block_graphs is None
    assert any("cuda_graphs needs a CUDA device" in w for w in engine.warnings)
    rgb = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    assert engine.run(rgb).labels.shape == (96, 128)


def test_padded_gflops_count_the_blocks_after_ip_on_the_bucket():
    model = small_model(ip=1)
    c = model.config
    with torch.inference_mode():
        dense = model.forward_features(torch.randn(1, 3, 96, 128), MergeBudget(0.0)).stats
        merged = model.forward_features(torch.randn(1, 3, 96, 128), MergeBudget(0.3, 50.0)).stats
    assert padded_gflops(c, dense) == frame_gflops(c, dense)  # nothing merged: nothing padded
    n = 1 + merged.kept_tokens[0] + c.k
    assert bucket_length(n) > n  # this frame is padded
    extra = (c.depth - c.ip) * (block_flops(bucket_length(n), c.embed_dim, c.mlp_hidden)
                                - block_flops(n, c.embed_dim, c.mlp_hidden)) / 1e9
    assert padded_gflops(c, merged) == pytest.approx(frame_gflops(c, merged) + extra, rel=1e-12)


def test_the_buckets_prepared_for_an_input_size_hold_every_merged_length():
    for p, k in [(48, 3), (1024, 3), (690, 8)]:
        buckets = merged_buckets(p, k)
        assert all(bucket_length(1 + kept + k) in buckets for kept in range(p + 1))
        assert len(buckets) == len(set(buckets)) and buckets == sorted(buckets)


class _Recorded:
    """Stands in for a captured graph on the CPU: runs the blocks it was made for eagerly."""

    def __init__(self, model, span, key_valid):
        self.model, self.span = model, span

    def run(self, x, key_valid):
        return self.model.run_blocks(x, key_valid, self.span)


def test_a_close_from_another_thread_waits_for_the_capture_in_flight():
    """The captures of an input size run on the first frame's thread; a close (a lifecycle cleanup
    on the executor thread) must not free anything under them, and afterwards the blocks run
    eagerly so a frame still running finishes."""
    model = small_model()
    graphs = BlockGraphs(model, capture=False)
    graphs.capture = True  # the capture path, with captures recorded instead of made (no GPU here)
    capturing, release, captured = threading.Event(), threading.Event(), []

    def slow_capture(span, x, key_valid, out):
        capturing.set()
        assert release.wait(10)
        captured.append((span, tuple(x.shape), key_valid is not None))
        return _Recorded(model, span, key_valid)

    graphs._capture = slow_capture
    x = torch.randn(1, 1 + 48, 64)
    outputs = []
    frame = threading.Thread(target=lambda: outputs.append(graphs(x, None, range(0, 1), False)))
    closer = threading.Thread(target=graphs.close)
    with torch.inference_mode():
        frame.start()
        assert capturing.wait(10)
        closer.start()
        closer.join(0.3)
        assert closer.is_alive(), "close() returned while a capture was in flight"
        release.set()
        frame.join(10)
        closer.join(10)
    c = model.config
    assert len(captured) == 3 + len(merged_buckets(48, c.k))  # the whole input size, at once
    assert (range(c.ip, c.depth), (1, bucket_length(1 + 10 + c.k), 64), True) in captured
    assert graphs.graphs == 0 and len(outputs) == 1
    with torch.inference_mode():
        torch.testing.assert_close(outputs[0], model.run_blocks(x, None, range(0, 1)))
        torch.testing.assert_close(graphs(x, None, range(0, 1), False), outputs[0])  # closed: eager
    assert graphs.graphs == 0


def engines(tmp_path, dtype):
    """A `cuda_graphs` engine and one that runs the same padded blocks eagerly."""
    path = tmp_path / "m.safetensors"
    save_checkpoint(small_model(), path)
    graphed = Engine(path, device="cuda", dtype=dtype, cuda_graphs=True)
    padded = Engine(path, device="cuda", dtype=dtype)
    padded.block_graphs = BlockGraphs(padded.model, capture=False)
    return graphed, padded


BUDGETS = [MergeBudget(0.0), MergeBudget(1.0), MergeBudget(0.5, 50.0), MergeBudget(0.75, 50.0), MergeBudget(1.0, 50.0)]


@needs_cuda
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_cuda_graphs_give_exactly_the_labels_of_the_padded_blocks_run_eagerly(tmp_path, dtype):
    """Same kernels on the same shapes, replayed or launched one by one: identical labels. (Against the
    unpadded engine only up to near-ties: random weights give near-equal logits.)"""
    graphed, padded = engines(tmp_path, dtype)
    rgb = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    graphed.run(rgb, MergeBudget(0.0))
    captured = graphed.block_graphs.graphs
    assert captured == 3 + len(merged_buckets(6 * 8, 3))  # every graph of this size, on its first frame
    for budget in BUDGETS + BUDGETS:
        a, b = graphed.run(rgb, budget), padded.run(rgb, budget)
        assert a.stats == b.stats and a.gflops == b.gflops
        np.testing.assert_array_equal(a.labels, b.labels)
    assert graphed.block_graphs.graphs == captured  # no frame after the first captured anything


def allocated() -> int:
    """Allocated GPU bytes, without the workspace cuBLAS keeps per stream for the process."""
    torch.cuda.synchronize()
    getattr(torch._C, "_cuda_clearCublasWorkspaces", lambda: None)()
    return torch.cuda.memory_allocated()


@needs_cuda
def test_close_returns_the_graphs_memory(tmp_path):
    before = allocated()
    graphed, padded = engines(tmp_path, "fp32")
    rgb = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    for budget in BUDGETS:
        graphed.run(rgb, budget)
        padded.run(rgb, budget)
    assert allocated() > before
    graphed.close()
    padded.close()
    assert allocated() == before
