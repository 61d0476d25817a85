"""``clustvit train``: train ClustViT (or with ``model.k=0`` the dense ViT baseline) from a recipe.

Loss: pixel CE + ``cluster_loss_weight`` x token CE against pseudo-cluster targets (the latter only
when the forward ran the Cluster module), plus ``train.distill_weight`` x a distillation term
when ``train.distill_teacher`` is set (:mod:`.distill`). Iteration-based, seeded, resumable;
``torchrun`` for several GPUs (DistributedDataParallel). Outputs in ``train.out_dir``:
``config.yaml`` (the resolved recipe), ``model.safetensors`` (the latest weights), ``state.pt``
(what ``--resume`` needs) and ``log.jsonl`` (training losses and evaluations).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..data.datasets import SegmentationDataset
from ..data.palettes import ClassInfo
from ..model.budget import MergeBudget
from ..model.checkpoints import check_shapes, load_checkpoint, save_checkpoint
from ..model.configs import ClustViTConfig
from ..model.segmentor import ClustViT
from ..runtime.engine import Engine
from ..runtime.options import EngineOptions
from .class_weights import class_weights
from .config import TrainConfig, load_config
from .data import train_dataset, val_dataset
from .distill import Distiller
from .distributed import DistInfo, all_mean, barrier, init_distributed
from .evaluate import evaluate
from .losses import Losses, clustvit_loss
from .optim import build_optimizer, build_scheduler
from .state import load_state, save_state, set_rng_state


@dataclass
class TrainResult:
    """``history``: the logged training entries; ``evals``: the periodic evaluations."""

    checkpoint: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)


def model_config(cfg: TrainConfig, classes: ClassInfo) -> ClustViTConfig:
    """The recipe's ``model`` section completed from the data: input size = crop, and the
    dataset's class names and palette unless the recipe names its own classes."""
    fields = dict(cfg.model)
    variant = fields.pop("variant", "custom")
    fields.setdefault("img_size", tuple(cfg.data.crop))
    if not fields.get("class_names"):
        fields["class_names"] = classes.names
        fields.setdefault("palette", [tuple(int(v) for v in c) for c in classes.palette])
    config = ClustViTConfig.from_variant(variant, **fields)
    if config.num_classes != classes.num_classes:
        raise ValueError(f"model has {config.num_classes} classes, dataset {classes.name!r} "
                         f"{classes.num_classes}")
    return config


MERGE_MODULES = ("cluster.", "regenerator.")  # what a ClustViT has and a dense ViT does not


def init_weights(model: ClustViT, path: str | Path) -> list[str]:
    """Load a checkpoint's weights into ``model``; every tensor must match (CheckpointError).

    A dense ViT checkpoint (k = 0) may start a ClustViT, as the paper fine-tunes ClustViT from ViT
    weights: the Cluster module and Regenerator then keep their fresh initialisation. Returns the
    names of the tensors left at that initialisation."""
    tensors = load_checkpoint(path).state_dict()
    fresh = []
    if not any(k.startswith(MERGE_MODULES) for k in tensors):  # a dense ViT
        own = model.state_dict()
        fresh = [k for k in own if k.startswith(MERGE_MODULES)]
        tensors = {**tensors, **{k: own[k] for k in fresh}}
    check_shapes(model, {k: tuple(v.shape) for k, v in tensors.items()}, str(path))
    model.load_state_dict(tensors)
    return fresh


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batches(dataset, cfg: TrainConfig, info: DistInfo, start_step: int) -> Iterator[tuple]:
    """Endless batches; epoch e is a seeded shuffle (DistributedSampler, one shard per rank) and
    its augmentation depends on (seed, e, index) only, so resuming at ``start_step`` continues
    exactly where the uninterrupted run would be."""
    bs = cfg.train.batch_size
    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank,
                                 shuffle=True, seed=cfg.train.seed, drop_last=True)
    per_epoch = len(sampler) // bs
    if per_epoch == 0:
        raise ValueError(f"{len(sampler)} training images per process: fewer than a batch ({bs})")
    epoch, skip = divmod(start_step, per_epoch)
    while True:
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        indices = list(sampler)[skip * bs: per_epoch * bs]
        yield from DataLoader(dataset, batch_size=bs, sampler=indices, drop_last=True,
                              num_workers=cfg.data.num_workers,
                              pin_memory=info.device.type == "cuda",
                              generator=torch.Generator().manual_seed(cfg.train.seed + epoch))
        epoch, skip = epoch + 1, 0


def train_budget(cfg: TrainConfig, step: int) -> MergeBudget:
    """The merge budget of one training step: uniform in ``train.merge_budget_range``, drawn from
    a generator of its own seeded by (seed, step), so it never shifts the other random streams."""
    lo, hi = cfg.train.merge_budget_range
    if lo == hi:
        return MergeBudget(lo)
    return MergeBudget(float(np.random.default_rng([cfg.train.seed, step]).uniform(lo, hi)))


def amp_settings(cfg: TrainConfig, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use a GradScaler). AMP is GPU-only: fp32 on the CPU."""
    if cfg.train.amp == "none":
        return None, False
    if device.type != "cuda":
        warnings.warn(f"train.amp={cfg.train.amp} needs a GPU: training in fp32 on {device}",
                      stacklevel=2)
        return None, False
    return (torch.bfloat16, False) if cfg.train.amp == "bf16" else (torch.float16, True)


class _Log:
    """Running means of the step values between two log lines."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, **values: float) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def means(self, info: DistInfo) -> dict[str, float]:
        out = {k: all_mean(v / self.count, info) for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        return out


@dataclass
class _Run:
    """What a training run updates step by step."""

    model: ClustViT
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    class_weight: torch.Tensor | None  # pixel-loss weights (train.class_weight), on the device
    distiller: Distiller | None = None  # the frozen teacher (train.distill_teacher)


def train(cfg: TrainConfig, resume: str | Path | None = None, progress: bool = True) -> TrainResult:
    """Run the recipe; returns the final checkpoint (``out_dir/model.safetensors``) and the logs."""
    info = init_distributed(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    out = _prepare_output(cfg, info)
    seed_everything(cfg.train.seed)
    data = train_dataset(cfg.data, progress=info.is_main and progress)
    val = val_dataset(cfg.data, progress=progress) if info.is_main else None
    run = _build_run(cfg, data, info)
    start = _resume(run, resume) if resume else 0
    if info.distributed:
        run.net = DistributedDataParallel(
            run.model, device_ids=[info.device] if info.device.type == "cuda" else None,
            find_unused_parameters=run.model.config.k > 0)  # nothing merged in a batch: Regenerator unused
    result = TrainResult(out / "model.safetensors")
    iters = cfg.schedule.iters
    bar = tqdm(total=iters, initial=start, disable=not (info.is_main and progress), unit="it",
               desc=f"train {'ClustViT k=%d' % run.model.config.k if run.model.config.k else 'ViT'}")
    stream = batches(data, cfg, info, start)
    running = _Log()
    t0 = time.perf_counter()
    for step in range(start, iters):
        losses, kept = _step(run, cfg, next(stream), step, info.device)
        bar.update()
        running.add(loss=losses.total.item(), seg=losses.seg.item(),
                    cluster=losses.cluster.item() if losses.cluster is not None else 0.0,
                    kept=sum(kept) / len(kept),
                    **({"distill": losses.distill.item()} if losses.distill is not None else {}))
        done = step + 1
        if done % cfg.train.log_interval == 0 or done == iters:
            entry = {"step": done, "lr": run.scheduler.get_last_lr()[0], **running.means(info),
                     "time_s": round(time.perf_counter() - t0, 1)}
            result.history.append(entry)
            if info.is_main:
                bar.set_postfix(loss=f"{entry['loss']:.3f}", kept=f"{entry['kept']:.0f}")
                _append(out / "log.jsonl", entry)
        _save_and_evaluate(run, cfg, result, val, info, done, bar)
    bar.close()
    return result


def _prepare_output(cfg: TrainConfig, info: DistInfo) -> Path:
    """The output folder with the resolved recipe in it (rank 0); device warnings shown once."""
    out = Path(cfg.train.out_dir)
    if info.is_main:
        for w in info.warnings:
            warnings.warn(w, stacklevel=3)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return out


def _build_run(cfg: TrainConfig, data: SegmentationDataset, info: DistInfo) -> _Run:
    """The model (from ``train.init`` when given) on its device, its optimiser, schedule, AMP,
    the class weights of the pixel loss (from ``data``'s masks) and the distillation teacher."""
    model = ClustViT(model_config(cfg, data.class_info))
    if cfg.train.init and (fresh := init_weights(model, cfg.train.init)) and info.is_main:
        print(f"init from the dense ViT {cfg.train.init}: {len(fresh)} Cluster module / Regenerator "
              "tensors start fresh", flush=True)
    model = model.to(info.device).train()
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.optim.lr)
    amp_dtype, use_scaler = amp_settings(cfg, info.device)
    scaler = torch.amp.GradScaler(info.device.type, enabled=use_scaler)
    class_weight = class_weights(cfg.train.class_weight, data)
    if class_weight is not None:
        class_weight = class_weight.to(info.device)
        if info.is_main:
            print(f"class weights ({cfg.train.class_weight}): " + ", ".join(
                f"{n} {w:.2f}" for n, w in zip(model.config.class_names, class_weight.tolist())),
                flush=True)
    distiller = None
    if cfg.train.distill_teacher:
        distiller = Distiller.from_file(cfg.train.distill_teacher, model.config.num_classes,
                                        cfg.train.distill_weight, cfg.train.distill_temperature,
                                        cfg.train.ignore_index, info.device)
    return _Run(model, model, optimizer, scheduler, scaler, amp_dtype, class_weight, distiller)


def _resume(run: _Run, path: str | Path) -> int:
    """Restore weights, optimiser, schedule, scaler and random streams; returns the next step."""
    state = load_state(path)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return int(state["step"])


def _step(run: _Run, cfg: TrainConfig, batch: tuple, step: int, device: torch.device
          ) -> tuple[Losses, list[int]]:
    """One optimisation step on ``batch``; returns its losses and the tokens each image kept."""
    images, masks = (t.to(device, non_blocking=True) for t in batch)
    autocast = (torch.autocast(device.type, dtype=run.amp_dtype) if run.amp_dtype
                else contextlib.nullcontext())
    config = run.model.config
    with autocast:
        seg_out = run.net(run.model.normalize(images), train_budget(cfg, step))
    losses = clustvit_loss(seg_out, masks, config.k, config.patch_size,
                           cfg.train.cluster_loss_weight, cfg.train.ignore_index, cfg.train.purity,
                           run.class_weight)
    if run.distiller is not None:  # the teacher sees the same augmented batch, in fp32
        distill = run.distiller.loss(images, seg_out.logits, masks)
        losses = losses._replace(total=losses.total + distill, distill=distill)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(losses.total).backward()
    if cfg.optim.grad_clip:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.optim.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    return losses, seg_out.stats.kept_tokens


def _save_and_evaluate(run: _Run, cfg: TrainConfig, result: TrainResult, val, info: DistInfo,
                       done: int, bar: tqdm) -> None:
    """After step ``done``: the resumable state, the checkpoint and an evaluation when due."""
    iters = cfg.schedule.iters
    saving = _due(done, cfg.train.checkpoint_interval, iters)
    evaluating = _due(done, cfg.train.eval_interval, iters)
    out = result.checkpoint.parent
    if info.is_main and saving:
        save_state(out / "state.pt", model=run.model, optimizer=run.optimizer,
                   scheduler=run.scheduler, scaler=run.scaler, step=done, config=cfg.to_dict())
    if info.is_main and (saving or evaluating):
        save_checkpoint(run.model, result.checkpoint, {"step": done, "recipe": cfg.to_dict()})
    if info.is_main and evaluating:
        entry = _evaluate(result.checkpoint, val, info.device, cfg.data.eval_resize, done)
        result.evals.append(entry)
        _append(out / "log.jsonl", entry)
        bar.write(f"step {done}: mIoU {100 * entry['miou']:.2f}, GFLOPs "
                  f"{entry['gflops_mean']:.3f} (dense path {entry['dense_gflops']:.3f}), "
                  f"kept {entry['kept_mean']:.1f}/{entry['kept_mean'] + entry['merged_mean']:.0f}")
    if saving or evaluating:  # the other ranks wait for rank 0's files
        barrier(info)


def _due(done: int, interval: int, iters: int) -> bool:
    return done == iters or (interval > 0 and done % interval == 0)


def _evaluate(checkpoint: Path, val, device: torch.device, resize: str,
              step: int) -> dict[str, Any]:
    """The saved weights through the engine at the default budget, leaving the RNGs untouched."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        engine = Engine.from_options(EngineOptions(str(checkpoint), device=str(device), resize=resize))
        r = evaluate(engine, val, MergeBudget(), warmup=1)
    return {"step": step, "eval": True, "miou": r.miou, "iou": r.iou, "gflops_mean": r.gflops_mean,
            "gflops_std": r.gflops_std, "dense_gflops": r.dense_gflops, "kept_mean": r.kept_mean,
            "merged_mean": r.merged_mean,
            "latency_p50_ms": r.latency_p50_ms}


def _append(path: Path, entry: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(entry) + "\n")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """``clustvit train``: train ClustViT, or the dense ViT baseline with ``model.k=0``, from a
    YAML recipe. Several GPUs: ``torchrun --nproc_per_node N -m clustvit_ros.cli train ...``."""
    parser = subparsers.add_parser("train", help="train a model from a YAML recipe",
                                   description=add_parser.__doc__)
    parser.add_argument("--config", required=True, help="training recipe (recipes/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE",
                        help="recipe overrides, e.g. model.k=0 train.out_dir=runs/vit")
    parser.add_argument("--resume", nargs="?", const="auto", metavar="STATE",
                        help="continue from a state.pt (default: OUT_DIR/state.pt)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    resume = Path(cfg.train.out_dir) / "state.pt" if args.resume == "auto" else args.resume
    result = train(cfg, resume, progress=not args.no_progress)
    if result.evals:
        last = result.evals[-1]
        print(f"final: mIoU {100 * last['miou']:.2f}, GFLOPs {last['gflops_mean']:.3f}")
    print(f"wrote {result.checkpoint}")
    return 0
