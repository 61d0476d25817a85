"""The fpn head: logits at a quarter of the patch size from the stem's maps and the final tokens."""
import pytest
import torch
import torch.nn.functional as F

from clustvit_ros.model.budget import MergeBudget
from clustvit_ros.model.checkpoints import load_checkpoint, read_metadata, save_checkpoint
from clustvit_ros.model.configs import ClustViTConfig
from clustvit_ros.model.fpn_head import FPNHead
from clustvit_ros.model.segmentor import ClustViT
from support.models import trained_looking_batchnorms


def fpn(**kw) -> ClustViT:
    torch.manual_seed(0)
    cfg = ClustViTConfig(**{**dict(embed_dim=32, depth=3, num_heads=2, mlp_hidden=64,
                                   cluster_hidden=24, img_size=(64, 64), num_classes=5, k=3, ip=1,
                                   stem="conv", head="fpn", fpn_channels=16), **kw})
    return ClustViT(cfg).eval()


@pytest.mark.parametrize("patch", [8, 16])
@pytest.mark.parametrize("hw", [(64, 64), (17, 33), (50, 70), (37, 101)])
def test_any_size_gives_logits_at_input_resolution_from_a_quarter_patch_grid(patch, hw):
    model = fpn(patch_size=patch)
    x = torch.randn(2, 3, *hw)
    padded = model.pad_to_patches(x)
    with torch.no_grad():
        out = model(x)
        feats = model.forward_features(padded)
        cells = model.forward_head(feats.tokens, feats.grid, feats.skips)
    assert out.logits.shape == (2, 5, *hw) and torch.isfinite(out.logits).all()
    assert model.config.logit_stride == patch // 4
    assert cells.shape == (2, 5, padded.shape[-2] * 4 // patch, padded.shape[-1] * 4 // patch)
    assert [tuple(s.shape[-2:]) for s in feats.skips] == [
        (padded.shape[-2] * 4 // patch, padded.shape[-1] * 4 // patch),
        (padded.shape[-2] * 2 // patch, padded.shape[-1] * 2 // patch)]


def test_padding_is_cropped_back_so_the_logits_line_up_with_the_padded_input():
    """An input that is not a multiple of 16 gives the logits of its zero-padded self, cropped:
    the quarter-patch cells sit on the padded image, not stretched onto the H x W pixels."""
    model = trained_looking_batchnorms(fpn())
    x = torch.randn(1, 3, 50, 70)
    padded = F.pad(x, (0, 10, 0, 14))
    with torch.no_grad():
        out, ref = model(x), model(padded)
        feats = model.forward_features(padded)
        cells = model.forward_head(feats.tokens, feats.grid, feats.skips)
    assert torch.equal(out.logits, ref.logits[..., :50, :70])
    assert cells.shape[-2:] == (16, 20)  # 4 x 4 pixels per cell of the padded 64 x 80 input
    up = F.interpolate(cells, size=(64, 80), mode="bilinear", align_corners=False)
    torch.testing.assert_close(ref.logits, up)


def test_merged_frames_decode_the_restored_token_grid():
    """A batch whose images keep different token counts: each image's logits are its own run
    alone, and differ from the dense path's (the head reads the regenerated tokens)."""
    model = fpn()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 48, 80)
    with torch.no_grad():
        model.cluster.fc2.weight.normal_(0, 0.5)
        batch, dense = model(x), model(x, MergeBudget(0.0))
        alone = [model(x[i:i + 1]) for i in range(2)]
    assert len(set(batch.stats.kept_tokens)) == 2 and max(batch.stats.merged_tokens) > 0
    for i in range(2):
        torch.testing.assert_close(batch.logits[i], alone[i].logits[0], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(batch.logits, dense.logits, atol=1e-3)


def test_the_loss_reaches_every_decoder_weight_and_the_stem_through_the_maps():
    model = fpn().train()
    x = torch.randn(2, 3, 48, 64)
    model(x, MergeBudget(0.0)).logits.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head.parameters())
    model.zero_grad()
    feats = model.forward_features(x, MergeBudget(0.0))
    sum(s.sum() for s in feats.skips).backward()  # the maps alone, not through the tokens
    assert model.encoder.patch_embed.stem[0].weight.grad.abs().sum() > 0


def test_the_head_needs_the_stem_maps():
    model = fpn()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, 32, 32))
        with pytest.raises(ValueError, match="quarter- and half-stride maps"):
            model.forward_head(feats.tokens, feats.grid)


def test_the_stem_maps_are_the_ones_it_computed_on_the_way():
    stem = fpn().encoder.patch_embed
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        tokens, (quarter, half) = stem.forward_with_skips(x, 2)
        torch.testing.assert_close(tokens, stem(x), rtol=0, atol=0)
        ref = x
        maps = []
        for i in range(0, len(stem.stem), stem.STAGE):
            ref = stem.stem[i + 2](stem.stem[i + 1](stem.stem[i](ref)))
            maps.append(ref)
    torch.testing.assert_close(quarter, maps[1])
    torch.testing.assert_close(half, maps[2])
    assert (quarter.shape[1], half.shape[1]) == (8, 16)  # the stem of width 32: 8, 8, 16, 32 channels


def test_config_needs_a_conv_stem_and_a_patch_of_8_or_more():
    with pytest.raises(ValueError, match="needs stem 'conv'"):
        fpn(stem="patch")
    with pytest.raises(ValueError, match="patch size of 8 or more"):
        fpn(patch_size=4)
    with pytest.raises(ValueError, match="fpn_channels must be positive"):
        fpn(fpn_channels=0)
    with pytest.raises(ValueError, match="fpn_channels 4096 exceeds"):
        fpn(fpn_channels=4096)


@pytest.mark.parametrize("channels_last", [False, True])
def test_folding_the_batchnorms_keeps_the_output(channels_last):
    """The engine folds every BatchNorm (stem and head) at load: same logits, none left."""
    model = trained_looking_batchnorms(fpn())
    x = torch.randn(2, 3, 48, 80)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        before = model(x).logits
        after = model.fold_batchnorm()(x).logits
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    with pytest.raises(RuntimeError, match="eval-mode"):
        FPNHead(32, (16, 32), 5, 16).fold_batchnorm()


def test_checkpoint_round_trip_rebuilds_the_head_from_the_metadata(tmp_path):
    model = trained_looking_batchnorms(fpn(fpn_channels=24))
    path = tmp_path / "fpn.safetensors"
    save_checkpoint(model, path, {"step": 3})
    config, extra = read_metadata(path)
    assert (config.head, config.fpn_channels, config.stem) == ("fpn", 24, "conv") and extra == {"step": 3}
    loaded = load_checkpoint(path)
    assert isinstance(loaded.head, FPNHead) and loaded.head.tokens.out_features == 24
    x = torch.randn(1, 3, 37, 61)
    with torch.no_grad():
        for budget in (MergeBudget(0.0), MergeBudget()):
            assert torch.equal(loaded(x, budget).logits, model(x, budget).logits)


def test_it_draws_poles_narrower_than_a_patch_that_the_linear_head_cannot():
    """Three-pixel poles off the patch centres: after the same few steps the fpn head finds them,
    the linear head (patch-level logits, bilinearly upsampled) cannot place them."""
    torch.set_num_threads(1)
    mask = torch.zeros(2, 64, 64, dtype=torch.long)
    images = torch.full((2, 3, 64, 64), -0.5)
    for b, columns in enumerate(((3, 22, 41, 60), (10, 29, 50))):
        for c in columns:
            mask[b, :, c:c + 3] = 1
            images[b, :, :, c:c + 3] = 0.8

    def pole_iou(head: str) -> float:
        torch.manual_seed(0)
        model = ClustViT(ClustViTConfig(embed_dim=32, depth=2, num_heads=2, mlp_hidden=64,
                                        img_size=(64, 64), num_classes=2, k=0, stem="conv",
                                        head=head, drop_path=0.0))
        optimizer = torch.optim.Adam(model.parameters(), 3e-3)
        for _ in range(60):
            loss = F.cross_entropy(model(images).logits, mask)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            pole = model.eval()(images).logits.argmax(1) == 1
        return ((pole & (mask == 1)).sum() / (pole | (mask == 1)).sum()).item()

    assert pole_iou("fpn") > 0.6
    assert pole_iou("linear") < 0.2
