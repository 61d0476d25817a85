"""Own checkpoint format: safetensors + config metadata; clear errors naming the file."""
import json

import pytest
import torch
from safetensors.torch import save_file

from clustvit_ros.model.budget import MergeBudget
from clustvit_ros.model.checkpoints import (CheckpointError, load_checkpoint, read_metadata,
                                            save_checkpoint)
from clustvit_ros.model.configs import ClustViTConfig
from clustvit_ros.model.segmentor import ClustViT


@pytest.fixture(scope="module")
def model() -> ClustViT:
    torch.manual_seed(0)
    cfg = ClustViTConfig(embed_dim=32, depth=3, num_heads=2, mlp_hidden=64, cluster_hidden=24,
                         img_size=(64, 64), k=2, ip=2, class_names=("water", "sky", "fish"),
                         palette=((0, 0, 255), (135, 206, 235), (255, 255, 0)))
    return ClustViT(cfg).eval()


def test_the_file_alone_rebuilds_the_model(tmp_path, model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path, extra_meta={"iteration": 80000, "miou": 0.5})
    loaded = load_checkpoint(path)
    assert loaded.config == model.config and not loaded.training
    assert loaded.config.class_names == ("water", "sky", "fish")
    assert loaded.config.palette[1] == (135, 206, 235)
    assert read_metadata(path)[1] == {"iteration": 80000, "miou": 0.5}
    assert all(p.requires_grad for p in loaded.parameters())
    x = torch.randn(1, 3, 48, 80)
    with torch.no_grad():
        for budget in (MergeBudget(), MergeBudget(0.0)):
            assert torch.equal(loaded(x, budget).logits, model(x, budget).logits)
    assert not list(tmp_path.glob(".*tmp"))


def test_extra_meta_must_be_json(tmp_path, model):
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(model, tmp_path / "m.safetensors", extra_meta={"bad": object()})


def _write(path, tensors, config: dict | None, **meta):
    if config is not None:
        meta.update(format="clustvit_ros", format_version="1", config=json.dumps(config))
    save_file(tensors, str(path), metadata=meta or None)


def test_broken_files_raise_checkpoint_errors_naming_the_file(tmp_path, model):
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    cfg = model.config.to_dict()
    cases = {}
    cases["missing.safetensors"] = "no such"
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00garbage!")
    cases["corrupt.safetensors"] = "unreadable"
    _write(tmp_path / "nometa.safetensors", sd, None)
    cases["nometa.safetensors"] = "no config"
    _write(tmp_path / "palette.safetensors", sd, cfg | {"palette": [[0, 0, 0]]})
    cases["palette.safetensors"] = "palette has 1 colours for num_classes=3"
    _write(tmp_path / "unknown.safetensors", sd, cfg | {"future_field": 1})
    cases["unknown.safetensors"] = "future_field"
    wrong = dict(sd, **{"head.cls_emb": torch.zeros(1, 5, 32)})
    _write(tmp_path / "shape.safetensors", wrong, cfg)
    cases["shape.safetensors"] = r"head.cls_emb: file \(1, 5, 32\) vs model \(1, 3, 32\)"
    partial = {k: v for k, v in sd.items() if not k.startswith("regenerator.")}
    _write(tmp_path / "partial.safetensors", dict(partial, extra=torch.zeros(1)), cfg)
    cases["partial.safetensors"] = "missing keys .*regenerator.fc1.bias.*unexpected keys .*extra"
    for name, pattern in cases.items():
        with pytest.raises(CheckpointError, match=pattern) as err:
            load_checkpoint(tmp_path / name)
        assert name in str(err.value)
        assert isinstance(err.value, ValueError)


def test_saved_checkpoints_are_readable_by_others(tmp_path, model):
    import os
    import stat

    from clustvit_ros.model.checkpoints import save_checkpoint

    umask = os.umask(0o022)
    try:
        save_checkpoint(model, tmp_path / "m.safetensors")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "m.safetensors").stat().st_mode) == 0o644
