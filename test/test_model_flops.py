"""Analytic GFLOPs against torch's FlopCounterMode on the same forward (math attention path)."""
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from clustvit_ros.cli import main
from clustvit_ros.model.budget import MergeBudget
from clustvit_ros.model.configs import ClustViTConfig
from clustvit_ros.model.flops import dense_gflops, flop_terms, frame_gflops, image_gflops
from clustvit_ros.model.segmentor import ClustViT


def counted(model: ClustViT, x: torch.Tensor, budget: MergeBudget):
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        out = model(x, budget)
    return fc.get_total_flops() / 1e9, out


# Full depth for tiny/small/base; ViT-L dims at reduced depth (24 blocks of D=1024 are slow to
# build here, and every block is counted by the same formula).
CASES = [
    ("tiny", {}, [(64, 64), (48, 112)], [0.0, 0.3, 1.0]),
    ("small", {}, [(64, 64), (80, 48)], [0.0, 0.5, 1.0]),
    ("base", {}, [(48, 64)], [0.0, 1.0]),
    ("large", {"depth": 4}, [(64, 48)], [0.0, 1.0]),
]


@pytest.mark.parametrize("variant, overrides, sizes, budgets", CASES, ids=[c[0] for c in CASES])
def test_analytic_gflops_match_the_flop_counter_for_every_variant(variant, overrides, sizes,
                                                                  budgets):
    torch.manual_seed(0)
    cfg = ClustViTConfig.from_variant(variant, num_classes=7, **overrides)
    model = ClustViT(cfg).eval()
    seen_merge = False
    for hw in sizes:
        x = torch.randn(1, 3, *hw)
        for budget in budgets:
            ref, out = counted(model, x, MergeBudget(budget))
            ours = frame_gflops(cfg, out.stats, hw)
            assert ours == pytest.approx(ref, rel=1e-2), (hw, budget)
            assert ours == pytest.approx(ref, rel=1e-9)  # in fact exact
            seen_merge |= out.stats.merged_tokens[0] > 0
            if budget == 0.0:
                assert ours == dense_gflops(cfg, hw)
    assert seen_merge


@pytest.mark.parametrize("head", ["mask", "linear"])
def test_partial_merges_nothing_merged_and_linear_head_are_exact(head):
    torch.manual_seed(0)
    cfg = ClustViTConfig(embed_dim=32, depth=4, num_heads=2, mlp_hidden=64, cluster_hidden=24,
                         img_size=(64, 64), num_classes=5, k=2, ip=2, head=head)
    model = ClustViT(cfg).eval()
    with torch.no_grad():
        model.cluster.fc2.weight.normal_(0, 1.0)
    x = torch.randn(1, 3, 70, 90)  # padded to 80x96
    kept = set()
    for budget in (MergeBudget(0.2), MergeBudget(1.0, -0.5), MergeBudget(1.0, -1e4)):
        ref, out = counted(model, x, budget)
        kept.add(out.stats.kept_tokens[0])
        assert frame_gflops(cfg, out.stats, (70, 90)) == pytest.approx(ref, rel=1e-9)
    assert len(kept) == 3 and 30 in kept  # 30 = nothing merged: dense + the Cluster MLP it ran


def test_a_batch_is_counted_per_image_as_if_alone():
    torch.manual_seed(0)
    cfg = ClustViTConfig(embed_dim=32, depth=3, num_heads=2, mlp_hidden=64, cluster_hidden=24,
                         img_size=(64, 64), num_classes=3, k=3, ip=1)
    model = ClustViT(cfg).eval()
    x = torch.randn(3, 3, 48, 64)
    with torch.no_grad():
        batch = model(x)
    alone = [counted(model, x[i:i + 1], MergeBudget())[0] for i in range(3)]
    assert image_gflops(cfg, batch.stats) == pytest.approx(alone, rel=1e-9)
    assert frame_gflops(cfg, batch.stats) == pytest.approx(sum(alone), rel=1e-9)
    with pytest.raises(ValueError, match="grid"):
        frame_gflops(cfg, batch.stats, (64, 64))


def test_flops_command_prints_dense_gflops_and_the_overhead_terms(capsys):
    cfg = ClustViTConfig.from_variant("small", num_classes=150)
    assert main(["flops", "--variant", "small", "--size", "512", "--classes", "150"]) == 0
    text = capsys.readouterr().out
    assert f"dense: {dense_gflops(cfg, (512, 512)):.3f} GFLOPs" in text
    assert "Cluster MLP" in text and "Regenerator" in text and "break-even" in text
    assert main(["flops", "--variant", "base", "--size", "480x640", "--classes", "3",
                 "--k", "0"]) == 0
    text = capsys.readouterr().out
    assert "30x40 = 1200 patch tokens" in text and "Cluster" not in text
    with pytest.raises(SystemExit):
        main(["flops", "--variant", "base", "--size", "0x5", "--classes", "3"])


@pytest.mark.parametrize("patch", [8, 16])
def test_conv_stem_is_counted_exactly_and_keeps_the_patch_grid(patch):
    torch.manual_seed(0)
    cfg = ClustViTConfig(embed_dim=32, depth=3, num_heads=2, mlp_hidden=64, cluster_hidden=24,
                         patch_size=patch, img_size=(64, 64), num_classes=5, k=2, ip=1,
                         head="linear", stem="conv")
    model = ClustViT(cfg).eval()
    x = torch.randn(1, 3, 70, 90)
    for budget in (MergeBudget(0.0), MergeBudget(1.0, -1e4)):
        ref, out = counted(model, x, budget)
        assert out.stats.grid == (-(-70 // patch), -(-90 // patch))
        assert out.logits.shape[-2:] == (70, 90)
        assert frame_gflops(cfg, out.stats, (70, 90)) == pytest.approx(ref, rel=1e-9)
    patch_cfg = ClustViTConfig(**{**cfg.__dict__, "stem": "patch"})
    assert dense_gflops(cfg, (70, 90)) > dense_gflops(patch_cfg, (70, 90))


def test_conv_stem_needs_a_power_of_two_patch():
    with pytest.raises(ValueError, match="power-of-two"):
        ClustViTConfig(embed_dim=32, depth=2, num_heads=2, mlp_hidden=64, patch_size=12, k=0,
                       img_size=(48, 48), num_classes=3, stem="conv")


@pytest.mark.parametrize("patch, channels", [(8, 16), (16, 24)])
def test_fpn_head_is_counted_exactly_at_every_budget(patch, channels):
    """The decoder's projections, separable convs and classifier on their own grids; the stem's
    maps it fuses are not computed twice (the count would exceed the analytic one)."""
    torch.manual_seed(0)
    cfg = ClustViTConfig(embed_dim=32, depth=3, num_heads=2, mlp_hidden=64, cluster_hidden=24,
                         patch_size=patch, img_size=(64, 64), num_classes=5, k=2, ip=1,
                         stem="conv", head="fpn", fpn_channels=channels)
    model = ClustViT(cfg).eval()
    with torch.no_grad():
        model.cluster.fc2.weight.normal_(0, 1.0)
    x = torch.randn(1, 3, 70, 90)
    kept = set()
    for budget in (MergeBudget(0.0), MergeBudget(0.5, 1e4), MergeBudget(1.0, -1e4)):
        ref, out = counted(model, x, budget)
        kept.add(out.stats.kept_tokens[0])
        assert frame_gflops(cfg, out.stats, (70, 90)) == pytest.approx(ref, rel=1e-9)
    p = out.stats.patch_tokens
    assert kept == {p, p - p // 2}  # dense, half merged, and the Cluster MLP run for nothing
    linear = ClustViTConfig(**{**cfg.__dict__, "head": "linear"})
    assert dense_gflops(cfg, (70, 90)) > dense_gflops(linear, (70, 90))


def test_flops_command_counts_the_fpn_head_on_a_conv_stem(capsys):
    args = ["flops", "--variant", "tiny", "--size", "368x480", "--classes", "11", "--head", "fpn"]
    assert main(args) == 2
    assert "needs stem 'conv'" in capsys.readouterr().err
    assert main([*args, "--stem", "conv"]) == 0
    cfg = ClustViTConfig.from_variant("tiny", num_classes=11, head="fpn", stem="conv")
    head = flop_terms(cfg, (23, 30))["head"] / 1e9
    assert f"head {head:.3f})" in capsys.readouterr().out


def test_fpn_head_adds_at_most_half_a_gflop_to_the_camvid_model():
    """The shipped CamVid dims at a full 360 x 480 frame (6.56 GFLOPs dense with the linear head):
    the decoder's cost, by the same count."""
    dims = dict(embed_dim=128, depth=12, num_heads=4, mlp_hidden=512, cluster_hidden=128, k=3,
                ip=1, stem="conv", img_size=(368, 480), num_classes=11)
    extra = dense_gflops(ClustViTConfig(**dims, head="fpn"), (360, 480)) - dense_gflops(
        ClustViTConfig(**dims, head="linear"), (360, 480))
    assert 0 < extra < 0.5
