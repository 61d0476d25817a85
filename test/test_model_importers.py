"""Importers: state dicts from reference modules written in each foreign layout compute the same
function after conversion. The references below are independent re-statements of timm's ViT,
mmseg's ViT + Segmenter head (nn.MultiheadAttention) and the official ClustViT merge loop."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clustvit_ros.cli import main
from clustvit_ros.model.budget import MergeBudget
from clustvit_ros.model.checkpoints import CheckpointError, load_checkpoint
from clustvit_ros.model.importers import import_weights

D, HEADS, FF, DEPTH, NCLS = 32, 2, 64, 3, 3


def bicubic(pos, src, dst):
    grid = pos[:, 1:].reshape(1, *src, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=dst, mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1], grid.flatten(2).transpose(1, 2)], 1)


def randomise(module: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            base = 1.0 if name.endswith("weight") and p.dim() == 1 else 0.0  # LayerNorm gains
            p.copy_(base + 0.15 * torch.randn(p.shape, generator=g))
    return module.eval()


# ---------------------------------------------------------------- timm layout
class TimmAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4)
        a = (q @ k.transpose(-2, -1) / math.sqrt(D // HEADS)).softmax(-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, D))


class TimmBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(D, eps=1e-6), TimmAttention()
        self.norm2 = nn.LayerNorm(D, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1, self.mlp.act, self.mlp.fc2 = nn.Linear(D, FF), nn.GELU(), nn.Linear(FF, D)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp.fc2(self.mlp.act(self.mlp.fc1(self.norm2(x))))


class TimmViT(nn.Module):
    """timm VisionTransformer naming, a 3x3 position grid (48 px), a 10-class classifier."""

    def __init__(self):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, D, 16, 16)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, 10, D))
        self.blocks = nn.Sequential(*[TimmBlock() for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(D, eps=1e-6)
        self.head = nn.Linear(D, 10)

    def features(self, img):
        x = self.patch_embed.proj(img)
        grid = x.shape[-2:]
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x.flatten(2).transpose(1, 2)], 1)
        return self.norm(self.blocks(x + bicubic(self.pos_embed, (3, 3), grid)))[:, 1:]


def test_timm_backbone_imports_with_a_resized_position_embedding(tmp_path):
    ref = randomise(TimmViT(), 0)
    model, report = import_weights(ref.state_dict(), num_heads=HEADS, img_size=(64, 64),
                                   num_classes=NCLS, ip=1)
    assert report.scheme == "timm" and report.ignored == ["head.weight", "head.bias"]
    assert report.resized == ["pos_embed 3x3 -> 4x4"] and not report.missing
    assert {k.split(".")[0] for k in report.initialised} == {"head", "cluster", "regenerator"}
    assert model.config.patch_bias and (model.config.k, model.config.ip) == (3, 1)
    x = torch.randn(2, 3, 64, 64)  # the reference resizes its 3x3 grid on the fly
    with torch.no_grad():
        ours = model.forward_features(x, MergeBudget(0.0)).tokens
        torch.testing.assert_close(ours, ref.features(x), atol=2e-5, rtol=1e-4)


# ---------------------------------------------------------------- mmseg / official ClustViT layout
class MMLayer(nn.Module):
    """mmseg TransformerEncoderLayer: ln1, attn.attn (nn.MultiheadAttention), ln2, ffn.layers."""

    def __init__(self, eps, ff):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D, eps=eps), nn.LayerNorm(D, eps=eps)
        self.attn = nn.Module()
        self.attn.attn = nn.MultiheadAttention(D, HEADS, batch_first=True)
        self.ffn = nn.Module()
        self.ffn.layers = nn.Sequential(nn.Sequential(nn.Linear(D, ff), nn.GELU(), nn.Dropout(0.0)),
                                        nn.Linear(ff, D), nn.Dropout(0.0))

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn.attn(h, h, h, need_weights=False)[0]
        return x + self.ffn.layers(self.ln2(x))


class MMBackbone(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.projection = nn.Conv2d(3, D, 16, 16, bias=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, 17, D))  # 4x4 training grid (64 px)
        self.layers = nn.ModuleList(MMLayer(1e-6, FF) for _ in range(DEPTH))
        self.ln1 = nn.LayerNorm(D, eps=1e-6)
        if k:
            self.clusterer = nn.Module()
            self.clusterer.net = nn.Sequential(nn.Linear(D, 40), nn.ReLU(), nn.Linear(40, k + 1))
            self.expand_mlp = nn.Sequential(nn.Linear(2 * D, D), nn.GELU(), nn.Linear(D, D))


class MMMaskHead(nn.Module):
    """mmseg SegmenterMaskTransformerHead (its unused conv_seg included)."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(MMLayer(1e-5, 4 * D) for _ in range(2))
        self.dec_proj = nn.Linear(D, D)
        self.cls_emb = nn.Parameter(torch.zeros(1, NCLS, D))
        self.patch_proj = nn.Linear(D, D, bias=False)
        self.classes_proj = nn.Linear(D, D, bias=False)
        self.decoder_norm, self.mask_norm = nn.LayerNorm(D), nn.LayerNorm(NCLS)
        self.conv_seg = nn.Conv2d(D, NCLS, 1)

    def forward(self, feat):
        b, c, h, w = feat.shape
        x = self.dec_proj(feat.permute(0, 2, 3, 1).reshape(b, -1, c))
        x = torch.cat((x, self.cls_emb.expand(b, -1, -1)), 1)
        for layer in self.layers:
            x = layer(x)
        x = self.decoder_norm(x)
        patches, cls_seg = self.patch_proj(x[:, :-NCLS]), self.classes_proj(x[:, -NCLS:])
        patches = patches / patches.norm(dim=-1, keepdim=True)
        cls_seg = cls_seg / cls_seg.norm(dim=-1, keepdim=True)
        masks = self.mask_norm(patches @ cls_seg.transpose(1, 2))
        return masks.permute(0, 2, 1).reshape(b, -1, h, w)


class MMLinearHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_seg = nn.Conv2d(D, NCLS, 1)

    def forward(self, feat):
        return self.conv_seg(feat)


class MMSegmentor(nn.Module):
    """Encoder-decoder with the official ClustViT merge loop written plainly (batch size 1)."""

    def __init__(self, k=0, ip=0, head="mask"):
        super().__init__()
        self.k, self.ip = k, ip
        self.backbone = MMBackbone(k)
        self.decode_head = MMMaskHead() if head == "mask" else MMLinearHead()

    def forward(self, img):
        bb = self.backbone
        x = bb.patch_embed.projection(img)
        (h, w), p = x.shape[-2:], x.shape[-2] * x.shape[-1]
        x = torch.cat([bb.cls_token, x.flatten(2).transpose(1, 2)], 1)
        x = x + bicubic(bb.pos_embed, (4, 4), (h, w))
        merged = False
        for i, layer in enumerate(bb.layers):
            if self.k and i == self.ip:
                z = x[0, 1:]
                a = bb.clusterer.net(z).argmax(-1)
                if len(torch.unique(a)) > 1:
                    keep = torch.nonzero(a == 0)[:, 0]
                    reps = [z[a == j].mean(0) if (a == j).any() else torch.zeros(D)
                            for j in range(1, self.k + 1)]
                    x = torch.cat([x[:, :1], z[keep][None], torch.stack(reps)[None]], 1)
                    merged = True
            x = layer(x)
        if merged:
            m = len(keep)
            full = torch.zeros(p, D)
            full[keep] = x[0, 1:1 + m]
            for t in range(p):
                if a[t] > 0:
                    full[t] = bb.expand_mlp(torch.cat([z[t], x[0, m + a[t]]]))
            x = torch.cat([x[:, :1], full[None]], 1)
        x = bb.ln1(x)[:, 1:]
        return self.decode_head(x.transpose(1, 2).reshape(1, D, h, w)), merged


def ours_patch_logits(model, x, budget=None):
    feats = model.forward_features(x, budget)
    return model.forward_head(feats.tokens, feats.grid), feats.stats


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_official_clustvit_release_imports_and_merges_identically(tmp_path, seed):
    ref = randomise(MMSegmentor(k=3, ip=2), seed)
    path = tmp_path / "clustvit.pth"
    meta = {"cfg": "model = dict(backbone=dict(type='ClustViT', injection_points=[2], k=3))",
            "dataset_meta": {"classes": ("bg", "rumex_o", "rumex_c"),
                             "palette": [[0, 0, 0], [0, 255, 0], [255, 0, 0]]}}
    torch.save({"state_dict": ref.state_dict(), "meta": meta}, path)
    model, report = import_weights(path, num_heads=HEADS)
    assert report.scheme == "clustvit" and not (report.missing or report.unexpected)
    assert report.ignored == ["decode_head.conv_seg.weight", "decode_head.conv_seg.bias"]
    c = model.config
    assert (c.k, c.ip, c.cluster_hidden, c.patch_bias, c.head) == (3, 2, 40, False, "mask")
    assert c.class_names == ("bg", "rumex_o", "rumex_c") and c.palette[1] == (0, 255, 0)
    merges = 0
    for hw in [(64, 64), (48, 96)]:
        x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            expected, merged = ref(x)
            ours, stats = ours_patch_logits(model, x)
        merges += merged
        assert stats.dense == [not merged]
        torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)
    assert merges


@pytest.mark.parametrize("head", ["mask", "linear"])
def test_mmseg_segmenter_imports_as_the_dense_baseline(head):
    ref = randomise(MMSegmentor(head=head), 5)
    model, report = import_weights({"state_dict": ref.state_dict()}["state_dict"], num_heads=HEADS)
    assert report.scheme == "mmseg" and model.config.k == 0 and model.config.head == head
    assert not (report.missing or report.unexpected or report.initialised)
    x = torch.randn(1, 3, 80, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours_patch_logits(model, x)[0], ref(x)[0], atol=1e-4, rtol=1e-4)
    # the same Segmenter as initialisation of a ClustViT: new modules are listed as initialised
    model, report = import_weights(ref.state_dict(), num_heads=HEADS, k=3, ip=1)
    assert {k.split(".")[0] for k in report.initialised} == {"cluster", "regenerator"}


class Payload:
    """An arbitrary pickled object: weights_only loading must refuse it."""


def test_unknown_missing_and_refused_content_is_reported_by_name(tmp_path):
    sd = randomise(MMSegmentor(k=2, ip=1), 0).state_dict()
    with pytest.raises(CheckpointError, match=r"cannot infer \['ip'\]"):
        import_weights(sd, num_heads=HEADS)
    extra = dict(sd, **{"backbone.layers.0.attn.gamma": torch.ones(D)})
    del extra["backbone.ln1.bias"]
    expected = (r"missing keys \['encoder.norm.bias'\], "
                r"unexpected keys \['backbone.layers.0.attn.gamma'\]")
    with pytest.raises(CheckpointError, match=expected):
        import_weights(extra, num_heads=HEADS, ip=1)
    _, report = import_weights(extra, num_heads=HEADS, ip=1, strict=False)
    assert report.unexpected == ["backbone.layers.0.attn.gamma"]
    assert report.missing == ["encoder.norm.bias"] and "gamma" in report.summary()
    with pytest.raises(CheckpointError, match="wrong shapes"):
        import_weights(sd, num_heads=HEADS, ip=1, cluster_hidden=8)
    torch.save({"state_dict": sd, "payload": Payload()}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="pickled.pth.*weights_only"):
        import_weights(tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="unknown weight naming"):
        import_weights({"foo.weight": torch.zeros(1)})


def test_convert_command_writes_a_loadable_checkpoint(tmp_path, capsys):
    ref = randomise(TimmViT(), 3)
    src, dst = tmp_path / "vit.pth", tmp_path / "vit.safetensors"
    torch.save(ref.state_dict(), src)
    argv = ["convert", str(src), str(dst), "--classes", "road,grass,sky", "--num-heads", "2",
            "--img-size", "64", "--k", "2", "--ip", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ignored: head.weight, head.bias" in out and "pos_embed 3x3 -> 4x4" in out
    model = load_checkpoint(dst)
    assert model.config.class_names == ("road", "grass", "sky") and model.config.k == 2
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x, MergeBudget(0.0)).tokens,
                                   ref.features(x), atol=2e-5, rtol=1e-4)
    assert main(["convert", str(tmp_path / "absent.pth"), str(dst)]) == 2
    assert "no such weights file" in capsys.readouterr().err
