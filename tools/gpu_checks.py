"""Checks for a GPU machine's first minutes (tools/gpu_first_run.sh), each printed in a few lines.

    PYTHONPATH=. python3 tools/gpu_checks.py env          # machine, driver, Python, torch, packages
    PYTHONPATH=. python3 tools/gpu_checks.py syncs        # host syncs of one frame (needs CUDA)
    PYTHONPATH=. python3 tools/gpu_checks.py attention    # which attention kernel runs, with the key mask

*syncs* counts the host synchronisations torch's sync debug mode reports during one frame of the
default model (after a first, untimed one), per engine (eager, ``cuda_graphs``) and path: the dense
path should sync once (the labels' copy to the host), a merged frame twice (the kept-token count, read
once for the frame, and the labels). It exits 1 when a count differs, naming every sync's line.
*attention* runs the blocks' attention module on a padded bucket with its key mask, and on the full
sequence without one, under torch's profiler, and names the scaled-dot-product backend and the
kernels that ran (a boolean mask rules out the flash kernel). Both need only the source tree.
"""
from __future__ import annotations

import argparse
import importlib
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout

from clustvit_ros.model import MergeBudget  # noqa: E402
from clustvit_ros.model.checkpoints import read_metadata  # noqa: E402
from clustvit_ros.model.vit import Attention  # noqa: E402
from clustvit_ros.runtime.block_graphs import bucket_length  # noqa: E402
from clustvit_ros.runtime.engine import Engine  # noqa: E402
from clustvit_ros.runtime.packaged import default_checkpoint  # noqa: E402
from clustvit_ros.runtime.timing import host_syncs  # noqa: E402

PACKAGES = ("numpy", "cv2", "yaml", "safetensors", "tqdm", "matplotlib", "pytest")
KERNEL_WORDS = ("attention", "attn", "fmha", "flash", "cudnn", "softmax")
PATHS = {"dense": (MergeBudget(0.0), 1), "own decision": (MergeBudget(1.0), 2),
         "50% merged": (MergeBudget(0.5, 100.0), 2)}


def check_env() -> int:
    print(f"python {platform.python_version()} at {sys.executable} (prefix {sys.prefix}), {platform.platform()}")
    print(f"torch {torch.__version__} from {Path(torch.__file__).parent}; CUDA {torch.version.cuda}, "
          f"cuDNN {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}")
    for name in PACKAGES:
        try:
            print(f"  {name} {getattr(importlib.import_module(name), '__version__', '?')}")
        except ImportError:
            print(f"  {name} missing")
    import clustvit_ros
    print(f"clustvit_ros from {Path(clustvit_ros.__file__).parent}; default model {default_checkpoint()}")
    if shutil.which("nvidia-smi"):
        query = "name,driver_version,memory.total,clocks.max.sm,power.limit"
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv"], capture_output=True, text=True)
        print(out.stdout.strip() or out.stderr.strip())
    if not torch.cuda.is_available():
        print("no CUDA device visible to torch")
        return 0
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        print(f"cuda:{i} {p.name}, compute capability {p.major}.{p.minor}, {p.total_memory / 2**30:.1f} GiB, "
              f"{p.multi_processor_count} SMs")
    print("SDPA backends enabled: " + ", ".join(
        f"{name} {getattr(torch.backends.cuda, f'{name}_sdp_enabled')()}"
        for name in ("flash", "mem_efficient", "math", "cudnn") if hasattr(torch.backends.cuda, f"{name}_sdp_enabled")))
    return 0


def frame_syncs(engine: Engine, rgb: np.ndarray, budget: MergeBudget) -> list[str]:
    """The source lines of the host syncs torch reports during one frame (after an untimed one)."""
    engine.run(rgb, budget)
    return host_syncs(lambda: engine.run(rgb, budget))


def check_syncs() -> int:
    if not torch.cuda.is_available():
        print("syncs: skipped, needs a CUDA device (torch's sync debug mode counts CUDA syncs only)")
        return 0
    checkpoint = default_checkpoint()
    cfg, _ = read_metadata(checkpoint)
    rgb = np.random.default_rng(0).integers(0, 256, (*cfg.img_size, 3), dtype=np.uint8)
    wrong = 0
    for mode in ("eager", "graphs"):
        engine = Engine(checkpoint, device="cuda", cuda_graphs=mode == "graphs")
        for path, (budget, expected) in PATHS.items():
            syncs = frame_syncs(engine, rgb, budget)
            ok = len(syncs) == expected
            wrong += not ok
            print(f"{mode:6} {path:13} {len(syncs)} host syncs (expected {expected}: {'ok' if ok else 'DIFFERS'}): "
                  + (", ".join(syncs) or "none"))
        engine.close()
    return 1 if wrong else 0


def attention_kernels(attn: Attention, x: torch.Tensor, key_valid: torch.Tensor | None) -> tuple[list[str], list[str]]:
    """(aten scaled-dot-product ops, device kernels) that one call of `attn` ran."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.is_cuda else [])
    attn(x, key_valid)  # lazy set-up outside the profile
    with profile(activities=activities) as prof:
        attn(x, key_valid)
        if x.is_cuda:
            torch.cuda.synchronize()
    ops, kernels = set(), set()
    for event in prof.events():
        name = event.name
        if name.startswith("aten::") and ("dot_product" in name or "attention" in name):
            ops.add(name)
        elif not name.startswith("aten::") and any(w in name.lower() for w in KERNEL_WORDS):
            kernels.add(name[:110])
    return sorted(ops), sorted(kernels)


@torch.inference_mode()
def check_attention() -> int:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg, _ = read_metadata(default_checkpoint())
    shapes = {"ViT-T/S/B at 512 (head dim 64)": (192, 3, 1024),
              f"default model ({cfg.embed_dim}d, {cfg.num_heads} heads)": (cfg.embed_dim, cfg.num_heads,
                                                                             cfg.grid[0] * cfg.grid[1])}
    dtypes = [torch.float32, torch.float16, torch.bfloat16] if device.type == "cuda" else [torch.float32, torch.bfloat16]
    print(f"attention on {device} (scaled_dot_product_attention, boolean key mask as the padded buckets use)")
    for label, (dim, heads, patches) in shapes.items():
        attn = Attention(dim, heads).to(device).eval()
        kept = patches // 2
        bucket = bucket_length(1 + kept + 3)
        for dtype in dtypes:
            attn = attn.to(dtype)
            masked = torch.arange(bucket, device=device)[None] < 1 + kept + 3
            cases = {f"padded bucket {bucket}, key mask": (torch.randn(1, bucket, dim, device=device, dtype=dtype), masked),
                     f"full {1 + patches}, no mask": (torch.randn(1, 1 + patches, dim, device=device, dtype=dtype), None)}
            for case, (x, key_valid) in cases.items():
                ops, kernels = attention_kernels(attn, x, key_valid)
                print(f"{label} {str(dtype).removeprefix('torch.')} {case}: {', '.join(ops) or 'no sdpa op'}"
                      + (f"; kernels: {'; '.join(kernels)}" if kernels else ""))
    return 0


CHECKS = {"env": check_env, "syncs": check_syncs, "attention": check_attention}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checks", nargs="+", choices=list(CHECKS))
    args = p.parse_args(argv)
    return max(CHECKS[name]() for name in args.checks)


if __name__ == "__main__":
    sys.exit(main())
