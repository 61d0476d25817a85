"""The label-map step of bench_model.py: every class upsampled vs block by block, on one model's logits.

For each merge setting the patch logits of the scene are computed once; then the engine's label map
(`runtime/label_map.py`: block by block on the CPU, `runtime/block_argmax.py`) and the reference
(every class upsampled, chunked running max) are timed interleaved on them, and their labels
compared. Where they differ, every differing pixel must be a tie to within float rounding.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

import report
from clustvit_ros.model import MergeBudget
from clustvit_ros.model.pixels import logits_to_pixels
from clustvit_ros.runtime.block_argmax import axis_maps, candidates
from clustvit_ros.runtime.engine import Engine
from clustvit_ros.runtime.label_map import upsample_argmax

HEADER = ["model", "path", "device", "blocks with one class", "classes per other block",
          "every class ms", "by blocks ms", "speed-up", "labels"]


@dataclass
class LabelMapTiming:
    """The label map of one setting's logits: how the blocks went, both timings, the agreement."""

    path: str
    classes: int
    one_class_share: float
    classes_per_mixed_block: float
    differ: int
    all_ties: bool
    all_ms: list[float] = field(default_factory=list)
    blocks_ms: list[float] = field(default_factory=list)


@torch.inference_mode()
def measure(engine: Engine, rgb: np.ndarray, paths: list[tuple[str, MergeBudget]], iters: int) -> list[LabelMapTiming]:
    """Time both label maps on the logits of each (label, budget), interleaved."""
    x = engine.model.pad_to_patches(engine._preprocess(rgb, rgb.shape[:2]))
    hw = tuple(x.shape[-2:])
    out = []
    for label, budget in paths:
        feats = engine.model.forward_features(x, budget)
        logits = engine.model.forward_head(feats.tokens, feats.grid, feats.skips).float()
        out.append(_describe(label, logits, hw))
        for _ in range(iters):
            for blocks_from, into in ((None, out[-1].all_ms), (0, out[-1].blocks_ms)):
                t0 = time.perf_counter()
                upsample_argmax(logits, hw, hw, hw, blocks_from=blocks_from, blocks_per_cell=0).cpu()
                into.append((time.perf_counter() - t0) * 1e3)
    return out


def _describe(label: str, logits: torch.Tensor, hw: tuple[int, int]) -> LabelMapTiming:
    rows, cols = axis_maps(tuple(logits.shape[-2:]), hw, hw, hw)
    found = candidates(logits, rows, cols)
    with_pixels = int((rows.run_count > 0).sum() * (cols.run_count > 0).sum())
    mixed = len(found.block.unique())
    reference = upsample_argmax(logits, hw, hw, hw, blocks_from=None)
    labels = upsample_argmax(logits, hw, hw, hw, blocks_from=0, blocks_per_cell=0)
    differ = (labels != reference).nonzero()
    scores = logits_to_pixels(logits, hw, hw)[0]
    y, x = differ[:, 0], differ[:, 1]
    best, chosen = scores[reference[y, x].long(), y, x], scores[labels[y, x].long(), y, x]
    return LabelMapTiming(label, logits.shape[1], 1 - mixed / with_pixels, len(found.cls) / max(mixed, 1),
                          len(differ), bool(torch.all(best - chosen <= 1e-5 * (1 + best.abs()))))


def rows_of(name: str, device: str, timings: list[LabelMapTiming]) -> list[list[str]]:
    rows = []
    for t in timings:
        every, blocks = report.p50(t.all_ms), report.p50(t.blocks_ms)
        labels = ("identical" if not t.differ else
                  f"{t.differ} px differ, rounding ties" if t.all_ties else f"**{t.differ} px differ**")
        rows.append([name, t.path, device, f"{t.one_class_share:.0%}", f"{t.classes_per_mixed_block:.1f} of {t.classes}",
                     report.fmt(every), report.fmt(blocks), f"{every / blocks:.1f}×", labels])
    return rows
