"""The inference engine: an RGB image in, a label map and what the frame cost out.

The node, ``clustvit bag``, evaluation (``clustvit eval``/``sweep``, training's periodic check) and the
benchmarks all run frames through `Engine.run`, so what is measured is what runs on the robot.
(The Segmenter of the ClustViT paper is the architecture, whose mask-transformer head is in
``model/heads.py``; this is the engine that runs it.)
"""
from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.palettes import ClassInfo, read_labels_file
from ..model.budget import MergeBudget
from ..model.checkpoints import load_checkpoint
from ..model.flops import dense_gflops, frame_gflops
from ..model.pixels import Normalize
from ..model.segmentor import TokenStats
from .block_graphs import BlockGraphs
from .device import device_scope, resolve_device, resolve_dtype
from .label_map import upsample_argmax
from .options import EngineOptions, check
from .packaged import resolve_checkpoint
from .timing import StageClock

MAX_MODEL_PIXELS = 2048 * 2048
"""Largest model input (H*W after resizing): 16384 patch tokens of 16 px; 1080p fits."""
MAX_MODEL_ASPECT = 16
"""Largest ratio of a model input's long side to its short side (a 360-degree strip is 4-8)."""


class InputRejected(ValueError):
    """A frame the engine does not run; the text says why. Callers count it as bad input."""


@dataclass(frozen=True)
class Result:
    """One processed frame."""

    labels: np.ndarray          # HxW uint8 class ids at the input image's resolution
    stats: TokenStats           # what the forward used (tokens kept / merged, dense path or not)
    gflops: float               # this frame, 2 FLOPs per multiply-add
    dense_gflops: float         # the same model on the same input without merging
    model_hw: tuple[int, int]   # the size the image was resized to for the model
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float


def model_input_size(image_hw: tuple[int, int], policy: str, input_size: tuple[int, int]) -> tuple[int, int]:
    """The (H, W) an image of `image_hw` is resized to before the model.

    fixed: exactly `input_size` (one window, predictable cost; the paper's SUIM/RumexWeeds policy).
    keep_aspect: scaled so the short side equals min(input_size), aspect kept.
    none: the image's own size. The model pads sizes that are not multiples of 16.
    Raises :class:`InputRejected` when that size is out of bounds (:func:`check_model_input`).
    """
    h, w = image_hw
    if policy == "fixed":
        size = tuple(input_size)
    elif policy == "keep_aspect":
        scale = min(input_size) / min(h, w)
        size = max(1, round(h * scale)), max(1, round(w * scale))
    else:
        check_resize_policy(policy)
        size = h, w
    check_model_input(size, f"{policy} resize of a {h}x{w} image")
    return size


def check_model_input(size: tuple[int, int], what: str) -> None:
    """Raise :class:`InputRejected` for an empty model input or one above :data:`MAX_MODEL_PIXELS`
    pixels or :data:`MAX_MODEL_ASPECT`:1, before anything is allocated for it."""
    h, w = size
    if h < 1 or w < 1:
        raise InputRejected(f"model input {h}x{w} ({what}) is empty")
    if h * w > MAX_MODEL_PIXELS:
        raise InputRejected(f"model input {h}x{w} ({what}) exceeds the limit of {MAX_MODEL_PIXELS} pixels")
    if max(h, w) > MAX_MODEL_ASPECT * min(h, w):
        raise InputRejected(f"model input {h}x{w} ({what}) exceeds the aspect limit of {MAX_MODEL_ASPECT}:1")


class Engine:
    """A checkpoint loaded on a device, ready to segment RGB frames one at a time.

    ``cuda_graphs``: on a GPU, run the transformer blocks as captured CUDA graphs, one per
    token-count bucket (:mod:`.block_graphs`); elsewhere it is ignored with a warning.
    """

    def __init__(self, checkpoint: str | Path, device: str = "auto", dtype: str = "fp32",
                 input_size: tuple[int, int] | None = None, resize: str = "fixed",
                 labels_file: str | Path | None = None, cuda_graphs: bool = False):
        self.device, self.warnings = resolve_device(device)
        self.dtype, dtype_warnings = resolve_dtype(dtype, self.device)
        self.warnings += dtype_warnings
        check_resize_policy(resize)  # before the (slow) load
        self.checkpoint = Path(checkpoint)
        self.model = load_checkpoint(self.checkpoint, map_location=self.device).eval().fold_batchnorm()
        self.model = self.model.to(self.dtype)
        self.config = self.model.config
        self.resize = resize
        self.input_size = tuple(input_size) if input_size else tuple(self.config.img_size)
        if resize == "fixed":
            check_model_input(self.input_size, "input_size")
        self.classes = (read_labels_file(labels_file, self.config.num_classes) if labels_file else
                        ClassInfo(self.checkpoint.stem, self.config.class_names, np.array(self.config.palette)))
        self._normalize = Normalize(self.config, self.device)
        self._dense_gflops: dict[tuple[int, int], float] = {}
        self.block_graphs: BlockGraphs | None = None
        if cuda_graphs and self.device.type == "cuda":
            self.block_graphs = BlockGraphs(self.model, capture=True)
        elif cuda_graphs:
            self.warnings.append("cuda_graphs needs a CUDA device: running the blocks without graphs")

    @classmethod
    def from_options(cls, options: EngineOptions, *share_dirs: str | Path) -> Engine:
        """The engine `options` describe; a packaged model's name is looked up in `share_dirs` first
        (see :func:`~.packaged.resolve_checkpoint`)."""
        return cls(resolve_checkpoint(options.checkpoint, *share_dirs), device=options.device,
                   dtype=options.dtype, input_size=options.input_size, resize=options.resize,
                   labels_file=options.labels_file or None, cuda_graphs=options.cuda_graphs)

    @torch.inference_mode()
    def run(self, rgb: np.ndarray, budget: MergeBudget = MergeBudget()) -> Result:
        """Segment one HxWx3 uint8 RGB image with the given merge budget."""
        with device_scope(self.device):
            return self._run(rgb, budget)

    def _run(self, rgb: np.ndarray, budget: MergeBudget) -> Result:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {rgb.shape} dtype {rgb.dtype}")
        image_hw = rgb.shape[:2]
        size = model_input_size(image_hw, self.resize, self.input_size)
        clock = StageClock(self.device)
        clock.mark()
        x = self.model.pad_to_patches(self._preprocess(rgb, size))
        clock.mark()
        feats = self.model.forward_features(x, budget, self.block_graphs)
        patch_logits = self.model.forward_head(feats.tokens, feats.grid, feats.skips)
        clock.mark()
        labels = upsample_argmax(patch_logits, tuple(x.shape[-2:]), size, image_hw).cpu().numpy()
        clock.mark()
        pre, inf, post = clock.durations_ms()
        if size not in self._dense_gflops:
            if len(self._dense_gflops) >= 64:  # image sizes vary with keep_aspect / none: stay bounded
                self._dense_gflops.clear()
            self._dense_gflops[size] = dense_gflops(self.config, size)
        return Result(labels=labels, stats=feats.stats, gflops=frame_gflops(self.config, feats.stats, size),
                      dense_gflops=self._dense_gflops[size], model_hw=size,
                      preprocess_ms=pre, inference_ms=inf, postprocess_ms=post)

    def release_cached_memory(self) -> None:
        """Return cached GPU memory to the driver (after an out-of-memory error); no-op on the CPU."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def close(self) -> None:
        """Free the model and its CUDA graphs and return their GPU memory to the driver; the engine
        runs nothing after this.

        A capture in flight on another thread finishes first. A frame still running keeps what it
        uses until it returns (its blocks run without graphs from then on).
        """
        block_graphs, self.block_graphs = self.block_graphs, None
        if block_graphs is not None:
            block_graphs.close()
        del self.model, self._normalize
        gc.collect()
        self.release_cached_memory()

    def _preprocess(self, rgb: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        """uint8 HWC on the host -> normalised 1x3xHxW in the model dtype on the device."""
        if not rgb.flags.writeable:  # e.g. a view of an immutable message buffer; torch needs writable
            rgb = rgb.copy()
        src = torch.from_numpy(rgb)
        if self.device.type == "cuda":
            src = src.pin_memory()
        x = src.to(self.device, non_blocking=True).permute(2, 0, 1).unsqueeze(0).float()
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self._normalize(x).to(self.dtype)


def check_resize_policy(resize: str) -> None:
    """Raise ValueError when `resize` is not a known policy."""
    if reason := check("resize", resize):
        raise ValueError(reason)
