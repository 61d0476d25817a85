"""`make bench-gpu`'s script: its CPU smoke run writes its table and targets into its own section of
the document, and without CUDA the real run stops with a reason instead of pretending."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from support.processes import REPO

SCRIPT = REPO / "benchmarks" / "bench_gpu.py"


def test_the_cpu_smoke_run_writes_the_gpu_section_and_only_that(tmp_path):
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n<!-- bench:model:start -->\nmodel table\n<!-- bench:model:end -->\n")
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--variants", "tiny", "--size", "64",
                             "--iters", "2", "--warmup", "1", "--dtypes", "fp32", "bf16", "--no-default",
                             "--doc", str(doc)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    text = doc.read_text()
    assert "<!-- bench:model:start -->\nmodel table\n<!-- bench:model:end -->" in text
    section = text[text.index("<!-- bench:gpu:start -->"):text.index("<!-- bench:gpu:end -->")]
    assert "CPU smoke run of the script" in section
    rows = [line for line in section.splitlines() if line.startswith("| ViT-T 64×64 | ")]
    paths = ["dense ViT (budget 0)", "ClustViT, 25% merged", "ClustViT, 50% merged", "ClustViT, 75% merged"]
    table = [line for line in rows if line.split(" | ")[2] in paths]
    assert [(r.split(" | ")[1], r.split(" | ")[2]) for r in table] == [(d, p) for d in ("fp32", "bf16") for p in paths]
    for target in ("ClustViT not slower than dense, bf16 graphs", "bf16 labels = fp32 labels on ≥ 99% of pixels",
                   "graphs labels = eager labels", "GFLOPs identical across dtypes and modes"):
        assert any(target in line for line in rows), target
    assert "CUDA graphs (token-count buckets) against eager" in section


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the real run would start")
def test_without_cuda_the_gpu_run_stops_with_a_reason(tmp_path):
    doc = tmp_path / "BENCHMARKS.md"
    result = subprocess.run([sys.executable, str(SCRIPT), "--doc", str(doc)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert "no CUDA device" in result.stderr and "--device cpu" in result.stderr
    assert not doc.exists()
