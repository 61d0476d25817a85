"""Token-count buckets and CUDA graphs (`cuda_graphs`): padding a merged sequence to its bucket must
change no output beyond float rounding and no label; on a GPU, replaying the captured graphs must
give the labels of the plain engine."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clustvit_ros.model import ClustViT, ClustViTConfig, MergeBudget, save_checkpoint
from clustvit_ros.runtime.block_graphs import BlockGraphs, bucket_length
from clustvit_ros.runtime.engine import Engine


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
    assert engine.blocks is None
    assert any("cuda_graphs needs a CUDA device" in w for w in engine.warnings)
    rgb = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    assert engine.run(rgb).labels.shape == (96, 128)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the CUDA-graph path)")
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_cuda_graphs_give_the_labels_of_the_plain_engine(tmp_path, dtype):
    path = tmp_path / "m.safetensors"
    save_checkpoint(small_model(), path)
    plain = Engine(path, device="cuda", dtype=dtype)
    graphed = Engine(path, device="cuda", dtype=dtype, cuda_graphs=True)
    rgb = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    budgets = [MergeBudget(0.0), MergeBudget(1.0), MergeBudget(0.5, 50.0), MergeBudget(0.75, 50.0)]
    for budget in budgets + budgets:  # the second round replays graphs captured in the first
        a, b = plain.run(rgb, budget), graphed.run(rgb, budget)
        assert a.stats == b.stats and a.gflops == b.gflops
        assert (a.labels == b.labels).mean() >= 0.999
    captured = graphed.blocks.graphs
    graphed.run(rgb, budgets[2])
    assert graphed.blocks.graphs == captured  # a bucket seen before is replayed, not captured again
