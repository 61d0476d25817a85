"""End to end through the command line: train -> checkpoint -> eval -> sweep (table and PNG)."""
from __future__ import annotations

import json

import yaml

from clustvit_ros.cli import main
from clustvit_ros.model.checkpoints import read_metadata
from clustvit_ros.train.evaluate import EvalResult
from clustvit_ros.train.sweep import budget_grid, markdown_table

from test_train_loop import TINY

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_train_eval_sweep(tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    common = ["--length", "3", "--device", "cpu", "--warmup", "1"]
    for name, k in (("clustvit", 3), ("vit", 0)):
        assert main(["train", "--config", str(recipe), f"model.k={k}", "schedule.iters=2",
                     f"train.out_dir={tmp_path / name}", "--no-progress"]) == 0
    ckpt, base = tmp_path / "clustvit" / "model.safetensors", tmp_path / "vit" / "model.safetensors"
    config, extra = read_metadata(ckpt)
    assert config.k == 3 and extra["step"] == 2 and extra["recipe"]["model"]["k"] == 3

    out_json = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(ckpt), "--budget", "0.5", "--bias", "1",
                 "--json", str(out_json), *common]) == 0
    result = json.loads(out_json.read_text())
    assert result["images"] == 3 and result["merge_budget"] == 0.5
    assert set(result["iou"]) == set(config.class_names)
    assert result["latency_p95_ms"] >= result["latency_p50_ms"] > 0
    assert result["kept_mean"] + result["merged_mean"] == 16
    assert "per-class IoU" in capsys.readouterr().out

    out = tmp_path / "sweep"
    assert main(["sweep", "--checkpoint", str(ckpt), "--baseline", str(base), "--budgets",
                 "0,0.5,1", "--biases=-1,0", "--out", str(out), *common]) == 0
    text = (out / "sweep.md").read_text()
    table, per_class = text.split("Per-class IoU (%):")
    table = table.strip().splitlines()
    assert len(table) == 2 + 1 + 5  # header, rule, baseline, 2 budgets x 2 biases + budget 0
    assert table[2].startswith("| ViT (dense baseline)")
    per_class = per_class.strip().splitlines()
    assert len(per_class) == len(table) and all(n in per_class[0] for n in config.class_names)
    assert per_class[2].startswith("| ViT (dense baseline)")
    assert (out / "sweep.png").read_bytes()[:8] == PNG_MAGIC
    data = json.loads((out / "sweep.json").read_text())
    assert data["baseline"]["kept_mean"] == 16 and len(data["results"]) == 5


def test_eval_rejects_a_bad_budget_and_a_missing_checkpoint(tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "none.safetensors")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(["sweep", "--checkpoint", "x", "--budgets", "1.5"]) == 2
    assert "merge_budget" in capsys.readouterr().err


def test_budget_grid_and_table_ratio():
    grid = budget_grid([1.0, 0.0, 0.5], [0.0, 1.0])
    assert [(b.merge_budget, b.merge_bias) for b in grid] == [
        (1.0, 0.0), (1.0, 1.0), (0.5, 0.0), (0.5, 1.0), (0.0, 0.0)]

    def result(gflops: float) -> EvalResult:
        return EvalResult(1.0, 0.0, 1, 0.5, {}, gflops, 0.0, 4.0, 1.0, 2.0, 10.0, 6.0, 0.0)

    table = markdown_table([result(1.0)], baseline=result(3.0))
    assert "| 3.00× |" in table.splitlines()[3] and "| 50.00 |" in table
