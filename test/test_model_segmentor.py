"""ViT encoder and segmentor: any input size, position-embedding resize/cache, fast path."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from clustvit_ros.model.budget import MergeBudget
from clustvit_ros.model.configs import ClustViTConfig
from clustvit_ros.model.segmentor import ClustViT
from clustvit_ros.model.vit import resize_pos_embed
from support.models import trained_looking_batchnorms


def tiny(**kw) -> ClustViT:
    torch.manual_seed(0)
    cfg = ClustViTConfig(**{**dict(embed_dim=32, depth=3, num_heads=2, mlp_hidden=64,
                                   cluster_hidden=24, img_size=(64, 64), num_classes=4, k=3,
                                   ip=1), **kw})
    return ClustViT(cfg).eval()


@pytest.mark.parametrize("head", ["mask", "linear"])
@pytest.mark.parametrize("hw", [(64, 64), (32, 160), (50, 70), (17, 33)])
def test_any_size_and_aspect_ratio_gives_logits_at_input_resolution(head, hw):
    model = tiny(head=head)
    with torch.no_grad():
        out = model(torch.randn(2, 3, *hw))
    assert out.logits.shape == (2, 4, *hw) and torch.isfinite(out.logits).all()
    assert out.stats.grid == (-(-hw[0] // 16), -(-hw[1] // 16))


def test_sizes_not_a_multiple_of_16_are_zero_padded_bottom_right_and_cropped_back():
    model = tiny()
    x = torch.randn(1, 3, 50, 70)
    padded = F.pad(x, (0, 10, 0, 14))  # zeros after normalisation = the mean colour
    with torch.no_grad():
        out, ref = model(x), model(padded)
    assert torch.equal(out.logits, ref.logits[..., :50, :70])
    assert out.stats == ref.stats
    with pytest.raises(ValueError, match="multiples of 16"):
        model.forward_features(x)


def test_position_embedding_is_resized_bicubically_and_cached_per_grid_for_inference():
    model = tiny()
    enc = model.encoder
    with torch.no_grad():
        a = enc.pos_embed_for((3, 5), torch.float32)
        assert enc.pos_embed_for((3, 5), torch.float32) is a  # cached
        grid = enc.pos_embed[:, 1:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
        ref = F.interpolate(grid, size=(3, 5), mode="bicubic", align_corners=False)
        torch.testing.assert_close(a[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, 15, 32))
        assert torch.equal(a[:, :1], enc.pos_embed[:, :1])
        assert enc.pos_embed_for((4, 4), torch.float32) is enc.pos_embed
        enc.pos_embed.add_(1.0)  # an optimiser step: the cache must not serve a stale copy
        assert torch.allclose(enc.pos_embed_for((3, 5), torch.float32)[:, 0], a[:, 0] + 1.0)
    grad_path = enc.pos_embed_for((3, 5), torch.float32)
    assert grad_path.requires_grad  # with gradients on it is recomputed (differentiable)
    assert resize_pos_embed(enc.pos_embed, (4, 4), (4, 4)) is enc.pos_embed


@pytest.mark.parametrize("kw", [{}, {"stem": "conv", "head": "fpn"}])
def test_the_batch_one_fast_path_syncs_the_host_at_most_once(monkeypatch, kw):
    model = tiny(**kw)
    x = torch.randn(1, 3, 64, 96)
    calls = []

    def counting(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *a, **kw):
            calls.append(name)
            return original(self, *a, **kw)
        return wrapper

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero",
                 "numpy", "cpu", "any", "all", "unique"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    with torch.inference_mode():
        model(x, MergeBudget(0.0))
        assert calls == []
        for budget in (MergeBudget(), MergeBudget(0.4, 0.5), MergeBudget(1.0, -1e4)):
            calls.clear()
            out = model(x, budget)
            assert len(calls) <= 1, calls
    assert out.stats.dense == [True]


def test_runs_under_inference_mode_and_in_bfloat16():
    model = tiny()
    x = torch.randn(1, 3, 48, 80)
    with torch.inference_mode():
        ref = model(x, MergeBudget(0.5))
        half = model.to(torch.bfloat16)
        for budget in (MergeBudget(), MergeBudget(0.5), MergeBudget(0.0)):
            out = half(x.to(torch.bfloat16), budget)
            assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.logits.float()).all()
    assert ref.stats.merged_tokens[0] > 0


def test_autocast_training_through_the_padded_batch_path():
    """The official code may break under AMP (docs/model.md, departures); here buffers follow the dtype."""
    model = tiny().train()
    with torch.no_grad():
        model.cluster.fc2.weight.normal_(0, 0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 48, 80))
    assert len(set(out.stats.kept_tokens)) == 2  # different kept counts: padding + key mask
    (out.logits.float().square().mean() + out.cluster_logits.float().mean()).backward()
    assert model.regenerator.fc1.weight.grad.abs().sum() > 0


def _trained_looking_conv_stem() -> ClustViT:
    """A conv-stem model whose BatchNorms hold non-trivial statistics and affine parameters."""
    return trained_looking_batchnorms(tiny(stem="conv", head="linear"))


@pytest.mark.parametrize("channels_last", [False, True])
def test_folding_the_conv_stem_batchnorm_keeps_the_output(channels_last):
    """The engine folds the stem's BatchNorms into its convs: same logits, no BatchNorm left,
    whatever the input's memory layout (a camera frame at the model's size arrives channels-last)."""
    model = _trained_looking_conv_stem()
    x = torch.randn(2, 3, 64, 96)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        before = model(x).logits
        after = model.fold_batchnorm()(x).logits
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_folding_refuses_a_training_model_and_leaves_a_patch_stem_alone():
    model = _trained_looking_conv_stem().train()
    with pytest.raises(RuntimeError, match="eval-mode"):
        model.fold_batchnorm()
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 4
    plain = tiny()
    state = {k: v.clone() for k, v in plain.state_dict().items()}
    plain.fold_batchnorm()
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in state.items())


def test_normalize_maps_rgb_0_255_to_minus_one_one():
    rgb = torch.tensor([0, 255, 0], dtype=torch.uint8).view(1, 3, 1, 1)
    out = tiny().normalize(rgb)
    assert out.dtype == torch.float32 and out.flatten().tolist() == [-1.0, 1.0, -1.0]


def test_the_model_layer_never_imports_ros():
    code = ("import sys, clustvit_ros.model, clustvit_ros.model.importers, clustvit_ros.cli; "
            "bad = [m for m in sys.modules if m.startswith(('rclpy', 'rosidl', 'sensor_msgs'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
