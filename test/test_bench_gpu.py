"""`make bench-gpu` and tools/gpu_first_run.sh, run here the way a bare GPU machine runs them: from this
checkout with PYTHONPATH, a python of their own carrying torch and a few packages but nothing of the
project installed, no ament index, no ROS (support/device_like.py). Their CPU dry runs write every
result under the folder given and print a short summary; without CUDA the real run stops with a reason."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import time

import pytest
import torch

from support.device_like import device_like_python, site_folder
from support.processes import REPO

SCRIPT = REPO / "benchmarks" / "bench_gpu.py"
FIRST_RUN = REPO / "tools" / "gpu_first_run.sh"
DRY_RUN = "--device cpu --variants tiny --size 64 --iters 2 --warmup 1 --dtypes fp32 bf16 --default-input-size 96 128"
PATHS = ["dense ViT (budget 0)", "ClustViT, 25% merged", "ClustViT, 50% merged", "ClustViT, 75% merged"]


@pytest.fixture(scope="module")
def device_env(tmp_path_factory):
    """The environment of a GPU machine's run: no ament index, no venv, PYTHONPATH = only the packages
    such a machine carries (the checkout is added by what is being tested), one thread per process
    (two of these runs on two shared cores would otherwise crawl)."""
    folder = site_folder(tmp_path_factory.mktemp("device_site"))
    env = {k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "PYTHONPATH", "VIRTUAL_ENV")}
    return dict(env, PYTHONPATH=str(folder), OMP_NUM_THREADS="1")


def cells(section: str, model: str) -> list[list[str]]:
    return [line.split(" | ") for line in section.splitlines() if line.startswith(f"| {model} | ")]


def test_the_cpu_dry_run_of_make_bench_gpu_writes_every_result_under_its_folder(tmp_path, device_env):
    out = tmp_path / "results"
    doc_before = (REPO / "docs" / "BENCHMARKS.md").read_text()
    result = subprocess.run(["make", "-s", "bench-gpu", f"GPU_PYTHON={' '.join(device_like_python())}",
                             f"BENCH_GPU_OUT={out}", f"BENCH_GPU_ARGS={DRY_RUN}"], cwd=REPO, env=device_env,
                            capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["bench_gpu.json", "bench_gpu.log", "bench_gpu.md", "bench_gpu.png"]
    assert (REPO / "docs" / "BENCHMARKS.md").read_text() == doc_before  # results stay in the folder

    log = (out / "bench_gpu.log").read_text()
    assert f"clustvit_ros from {REPO / 'clustvit_ros'};" in log  # the checkout, not an installed copy
    assert "AMENT_PREFIX_PATH unset; ROS modules imported: none" in log
    assert f"prefix {sys.prefix})" not in log  # not this venv's python

    section = (out / "bench_gpu.md").read_text()
    assert "CPU dry run of the script" in section and "Partial" not in section
    vit = cells(section, "ViT-T 64×64")
    table = [row for row in vit if row[2] in PATHS]
    assert [(row[1], row[2]) for row in table] == [(d, p) for d in ("fp32", "bf16") for p in PATHS]
    eager, padded = map(float, table[2][3].split(" / "))  # 50 % merged: 12 tokens run as a bucket of 16
    assert padded > eager
    default = cells(section, "default model (128d × 12, 11 classes) 96×128")
    assert [row[2] for row in default if row[1] == "bf16"][1] == "ClustViT, own decision (budget 1)"
    for target in ("ClustViT not slower than dense, bf16 graphs",
                   "bf16 labels = fp32 labels on ≥ 99.9% of the decisive pixels (dense path)",
                   "graphs labels = padded eager labels, every pixel of every row",
                   "GFLOPs identical across dtypes and modes"):
        assert any(target in row[1] for row in vit), target
    assert any("decisive pixels (every setting)" in row[1] for row in default)
    assert all(row[-1].strip(" |") == "**met**" for row in vit + default if "graphs labels = padded" in row[1])
    assert "CUDA graphs (token-count buckets) against eager" in section and "bench_gpu.png" in section

    lines = result.stdout.splitlines()
    assert re.fullmatch(r"targets: \d+ met, \d+ missed", lines[0]) and lines[-1].startswith("results: ")
    assert len(result.stdout) < 4000  # what a GPU machine's tool brings back of the output is short


def test_a_runs_section_is_published_into_the_doc_with_its_plot(tmp_path):
    results, doc = tmp_path / "results", tmp_path / "docs" / "BENCHMARKS.md"
    results.mkdir()
    doc.parent.mkdir()
    (results / "bench_gpu.md").write_text("## GPU\n\nmeasured table\n")
    (results / "bench_gpu.png").write_bytes(b"png")
    doc.write_text("# Benchmarks\n\n<!-- bench:model:start -->\nmodel table\n<!-- bench:model:end -->\n")
    result = subprocess.run([sys.executable, str(SCRIPT), "--publish", str(results), "--doc", str(doc)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    text = doc.read_text()
    assert "<!-- bench:model:start -->\nmodel table\n<!-- bench:model:end -->" in text
    assert "<!-- bench:gpu:start -->\n## GPU\n\nmeasured table\n<!-- bench:gpu:end -->" in text
    assert (doc.parent / "bench_gpu.png").read_bytes() == b"png"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the real run would start")
def test_without_cuda_the_gpu_run_stops_with_a_reason(tmp_path):
    out = tmp_path / "results"
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert "no CUDA device" in result.stderr and "--device cpu" in result.stderr
    assert not out.exists()


def first_run(results, device_env, **env):
    python = " ".join(device_like_python())
    return subprocess.run([str(FIRST_RUN), str(results)], cwd="/", env=dict(device_env, PYTHON=python, **env),
                          capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the script would run its CUDA steps")
def test_the_first_run_script_runs_what_the_cpu_can_and_names_what_it_skips(tmp_path, device_env):
    results = tmp_path / "first"
    result = first_run(results, device_env, FIRST_RUN_SECONDS="270")  # ends before this test's time limit
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    summary = (results / "summary.txt").read_text()
    for step, status in [("env", "ok"), ("tests", "skipped: needs CUDA"), ("syncs", "skipped: needs CUDA"),
                         ("attention", "ok"), ("quick", "ok"), ("full", "skipped: needs CUDA")]:
        assert re.search(rf"^{step} +{re.escape(status)}", summary, re.M), (step, summary)
    assert "no CUDA device visible to torch" in summary
    assert f"clustvit_ros from {REPO / 'clustvit_ros'}" in (results / "env.log").read_text()
    assert "key mask: aten::" in (results / "attention.log").read_text()
    assert "CPU dry run of the script" in (results / "quick" / "bench_gpu.md").read_text()
    with tarfile.open(results / "first_run.tar.gz") as packed:
        names = set(packed.getnames())
    assert {"./summary.txt", "./env.log", "./attention.log", "./quick/bench_gpu.md", "./quick/bench_gpu.png"} <= names
    assert "== quick ==" in result.stdout and "targets: " in result.stdout and len(result.stdout) < 12000


def test_the_first_run_script_keeps_inside_its_total_time(tmp_path, device_env):
    start = time.monotonic()
    result = first_run(tmp_path / "first", device_env, FIRST_RUN_SECONDS="30")
    assert time.monotonic() - start < 30
    summary = (tmp_path / "first" / "summary.txt").read_text()
    assert "the 30 s of the whole run are spent" in summary, summary
    assert (tmp_path / "first" / "first_run.tar.gz").exists()
    assert "at most 30 s" in result.stdout
