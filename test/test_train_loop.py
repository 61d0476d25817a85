"""The training loop on a tiny model: seeded, resumable, dense baseline, DDP (1 gloo process)."""
from __future__ import annotations

import json
import math
import socket

import pytest
import torch
import torch.distributed as dist
import yaml

from clustvit_ros.cli import main
from clustvit_ros.model.checkpoints import CheckpointError, load_checkpoint
import clustvit_ros.train.train as loop
from clustvit_ros.train.config import TrainConfig
from clustvit_ros.train.state import save_state
from clustvit_ros.train.train import train

TINY = {
    "model": {"embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_hidden": 64, "cluster_hidden": 32,
              "k": 3, "ip": 1, "head": "linear", "drop_path": 0.1},
    "data": {"dataset": "synthetic", "size": [64, 64], "crop": [64, 64], "train_length": 6,
             "val_length": 2, "cache": True},
    "optim": {"name": "adamw", "lr": 1e-3},
    "schedule": {"iters": 4, "warmup_iters": 1, "min_lr": 0.0},
    "train": {"batch_size": 2, "log_interval": 1, "eval_interval": 0, "checkpoint_interval": 2,
              "device": "cpu"},
}


def tiny_config(out_dir, **sections) -> TrainConfig:
    data = {name: dict(values) for name, values in TINY.items()}
    for name, values in sections.items():
        data[name].update(values)
    data["train"]["out_dir"] = str(out_dir)
    return TrainConfig.from_dict(data)


def _losses(result):
    return [entry["loss"] for entry in result.history]


def test_same_seed_same_loss_curve_and_checkpoint(tmp_path):
    a = train(tiny_config(tmp_path / "a"), progress=False)
    b = train(tiny_config(tmp_path / "b"), progress=False)
    assert len(a.history) == 4 and _losses(a) == _losses(b)
    assert all(e["cluster"] > 0 for e in a.history)
    wa, wb = load_checkpoint(a.checkpoint).state_dict(), load_checkpoint(b.checkpoint).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    c = train(tiny_config(tmp_path / "c", train={"seed": 1}), progress=False)
    assert _losses(c) != _losses(a)
    evals = a.evals
    assert len(evals) == 1 and evals[0]["step"] == 4 and 0 <= evals[0]["miou"] <= 1
    assert (tmp_path / "a" / "log.jsonl").read_text().count("\n") == 5
    assert (tmp_path / "a" / "config.yaml").is_file()


def test_resume_continues_the_same_run(tmp_path, monkeypatch):
    full = train(tiny_config(tmp_path / "full"), progress=False)
    cfg = tiny_config(tmp_path / "resumed")

    class Interrupt(Exception):
        pass

    def save_then_interrupt(*args, step, **kwargs):  # killed right after the step-2 state
        save_state(*args, step=step, **kwargs)
        raise Interrupt

    monkeypatch.setattr(loop, "save_state", save_then_interrupt)
    with pytest.raises(Interrupt):
        train(cfg, progress=False)
    monkeypatch.setattr(loop, "save_state", save_state)
    resumed = train(cfg, resume=tmp_path / "resumed" / "state.pt", progress=False)
    assert [e["step"] for e in resumed.history] == [3, 4]
    assert _losses(resumed) == _losses(full)[2:]
    wa = load_checkpoint(full.checkpoint).state_dict()
    wb = load_checkpoint(resumed.checkpoint).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_dense_baseline_from_the_same_recipe(tmp_path):
    result = train(tiny_config(tmp_path, model={"k": 0}), progress=False)
    assert all(e["cluster"] == 0 and e["kept"] == 16 for e in result.history)
    model = load_checkpoint(result.checkpoint)
    assert model.config.k == 0 and model.cluster is None
    assert model.config.class_names[0] == "sky"


def test_clustvit_starts_from_a_dense_vit_checkpoint_as_in_the_paper(tmp_path):
    dense = train(tiny_config(tmp_path / "vit", model={"k": 0}), progress=False)
    vit = load_checkpoint(dense.checkpoint).state_dict()
    cfg = tiny_config(tmp_path / "clustvit")
    model = loop.ClustViT(loop.model_config(cfg, loop.train_dataset(cfg.data, progress=False).class_info))
    fresh = loop.init_weights(model, dense.checkpoint)
    assert fresh and all(k.startswith(("cluster.", "regenerator.")) for k in fresh)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in vit.items())  # backbone and head from the ViT
    result = train(tiny_config(tmp_path / "clustvit", train={"init": str(dense.checkpoint)}), progress=False)
    assert all(e["cluster"] > 0 for e in result.history)
    wider = train(tiny_config(tmp_path / "wide", model={"k": 0, "embed_dim": 48, "num_heads": 2}), progress=False)
    with pytest.raises(CheckpointError, match="wrong shapes"):
        loop.init_weights(model, wider.checkpoint)


def test_amp_request_on_cpu_warns_and_trains_in_fp32(tmp_path):
    with pytest.warns(UserWarning, match="needs a GPU"):
        result = train(tiny_config(tmp_path, train={"amp": "fp16"},
                                   schedule={"iters": 1}), progress=False)
    assert len(result.history) == 1


def test_ddp_path_with_one_gloo_process(tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0",
                       "LOCAL_RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        result = train(tiny_config(tmp_path, schedule={"iters": 2}), progress=False)
    finally:
        dist.destroy_process_group()
    assert len(result.history) == 2 and result.checkpoint.is_file()


def test_clustvit_train_with_the_fpn_head(tmp_path):
    """``clustvit train`` with the decoder switched on by overrides: the checkpoint rebuilds it and
    the periodic evaluation runs it through the engine."""
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    assert main(["train", "--config", str(recipe), "model.stem=conv", "model.head=fpn",
                 "model.fpn_channels=16", f"train.out_dir={tmp_path}", "--no-progress"]) == 0
    model = load_checkpoint(tmp_path / "model.safetensors")
    assert (model.config.head, model.config.fpn_channels) == ("fpn", 16)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3, 4]
    assert all(math.isfinite(e["loss"]) for e in log if "loss" in e)
    assert 0 <= log[-1]["miou"] <= 1 and log[-1]["step"] == 4
