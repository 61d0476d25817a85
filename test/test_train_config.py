"""Training recipes: YAML + overrides -> TrainConfig, validation, shipped recipes, schedule."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from clustvit_ros.data.palettes import get_class_info
from clustvit_ros.train.config import TrainConfig, load_config
from clustvit_ros.train.optim import build_optimizer, build_scheduler, poly_factor
from clustvit_ros.train.train import model_config

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_overrides_are_yaml_values_in_sections(tmp_path):
    path = _write(tmp_path, {"model": {"k": 3}, "optim": {"name": "adamw"}})
    cfg = load_config(path, ["model.k=0", "schedule.iters=10", "data.crop=[32, 48]",
                             "train.amp=bf16"])
    assert cfg.model["k"] == 0 and cfg.schedule.iters == 10
    assert cfg.data.crop == (32, 48) and cfg.train.amp == "bf16" and cfg.optim.name == "adamw"


@pytest.mark.parametrize("data, override, match", [
    ({"optim": {"nam": "sgd"}}, None, "unknown keys.*nam"),
    ({"trainer": {}}, None, "unknown training config sections"),
    ({}, "k=0", "section.key=value"),
    ({}, "optim.name=adam", "optim.name"),
    ({}, "data.dataset=suim", "data.root"),
    ({}, "data.crop=[250, 250]", "multiple of the patch size"),
    ({}, "train.amp=fp8", "train.amp"),
])
def test_invalid_recipes_are_rejected_with_a_reason(tmp_path, data, override, match):
    with pytest.raises(ValueError, match=match):
        load_config(_write(tmp_path, data), [override] if override else [])


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_shipped_recipes_build_their_model_config(recipe):
    cfg = load_config(recipe)
    classes = get_class_info(cfg.data.dataset)
    mcfg = model_config(cfg, classes)
    assert mcfg.num_classes == classes.num_classes and mcfg.class_names == classes.names
    assert mcfg.img_size == tuple(cfg.model.get("img_size", cfg.data.crop))  # default: the crop
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", ["default", "camvid"])
def test_baseline_recipe_differs_only_in_k_and_output(name):
    root = RECIPES[0].parent
    a = load_config(root / f"{name}_clustvit.yaml").to_dict()
    b = load_config(root / f"{name}_vit.yaml").to_dict()
    assert (a["model"].pop("k"), b["model"].pop("k")) == (3, 0)
    assert a["train"].pop("out_dir") != b["train"].pop("out_dir")
    assert a == b


def test_poly_schedule_with_warmup():
    cfg = TrainConfig.from_dict({"optim": {"name": "adamw", "lr": 1e-3},
                                 "schedule": {"iters": 100, "min_lr": 1e-4, "power": 1.0,
                                              "warmup_iters": 10, "warmup_ratio": 0.1}})
    assert poly_factor(0, cfg.schedule, 1e-3) == pytest.approx(0.1)
    assert poly_factor(50, cfg.schedule, 1e-3) == pytest.approx(0.55)
    assert poly_factor(100, cfg.schedule, 1e-3) == pytest.approx(0.1)
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model, cfg.optim)
    sched = build_scheduler(opt, cfg.schedule, cfg.optim.lr)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-4) and max(lrs) == pytest.approx(lrs[10])
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_optimizers_and_weight_decay_groups():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
    sgd = build_optimizer(model, TrainConfig().optim)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    cfg = TrainConfig.from_dict({"optim": {"name": "adamw", "weight_decay": 0.05,
                                           "no_decay_norm_bias": True}}).optim
    adamw = build_optimizer(model, cfg)
    assert isinstance(adamw, torch.optim.AdamW)
    assert [len(g["params"]) for g in adamw.param_groups] == [1, 3]
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.05, 0.0]
