"""A segmented frame's outputs, built here once for every caller (the node, `clustvit bag`), which
only serialise them: the class-id mask, the colour mask and the overlay (each computed when first
asked for) and the values of the FrameStats message fields."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from ..data.palettes import colorize
from ..model.budget import MergeBudget
from .engine import Result


@dataclass(frozen=True)
class FrameTimes:
    """Host-side times of one frame in ms, next to the engine's own stage timings."""

    queue_ms: float       # received -> processing started
    decode_ms: float      # message -> RGB array
    output_ms: float      # colour mask, overlay and their messages, sent or written
    latency_ms: float     # received -> last image output out
    stamp_age_ms: float   # outputs out minus header.stamp (NaN when unknown)

    @classmethod
    def from_marks(cls, received: float, started: float, decoded: float, segmented: float,
                   done: float, stamp_age_ms: float = math.nan) -> FrameTimes:
        """From the monotonic-clock marks (seconds) of one frame."""
        return cls(queue_ms=(started - received) * 1e3, decode_ms=(decoded - started) * 1e3,
                   output_ms=(done - segmented) * 1e3, latency_ms=(done - received) * 1e3,
                   stamp_age_ms=stamp_age_ms)


def stamp_age_ms(now_ns: int, sec: int, nanosec: int) -> float:
    """Milliseconds from a header stamp (sec, nanosec) to `now_ns`; NaN for the unset stamp (0, 0).

    Any stamp builtin_interfaces/Time can hold is valid here, negative seconds (a clock before its
    epoch) included: the age is plain integer arithmetic.
    """
    if sec == 0 and nanosec == 0:
        return math.nan
    return (now_ns - (sec * 1_000_000_000 + nanosec)) / 1e6


@dataclass
class Frame:
    """An RGB image, what the engine made of it and the palette its class ids are drawn in."""

    rgb: np.ndarray
    result: Result
    palette: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """HxW uint8 class ids at the image's resolution."""
        return self.result.labels

    @cached_property
    def color(self) -> np.ndarray:
        """HxWx3 uint8 RGB: every pixel in its class's colour."""
        return colorize(self.result.labels, self.palette, ignore_index=None)

    def overlay(self, alpha: float) -> np.ndarray:
        """HxWx3 uint8 RGB: (1 - alpha) * image + alpha * colour mask."""
        return cv2.addWeighted(self.rgb, 1.0 - alpha, self.color, alpha, 0.0)

    def stats(self, times: FrameTimes, budget: MergeBudget, dropped: int) -> dict[str, float | int | bool]:
        """The FrameStats fields of this frame by name, all but the header.

        preprocess_ms includes decoding the message; postprocess_ms includes the image outputs.
        """
        r, s = self.result, self.result.stats
        return {"gflops": r.gflops, "dense_gflops": r.dense_gflops,
                "latency_ms": times.latency_ms, "queue_ms": times.queue_ms,
                "preprocess_ms": times.decode_ms + r.preprocess_ms, "inference_ms": r.inference_ms,
                "postprocess_ms": r.postprocess_ms + times.output_ms, "stamp_age_ms": times.stamp_age_ms,
                "patch_tokens": s.patch_tokens, "kept_tokens": s.kept_tokens[0],
                "merged_tokens": s.merged_tokens[0], "clusters_used": s.clusters_used[0],
                "dense": s.dense[0], "merge_budget": budget.merge_budget,
                "merge_bias": budget.merge_bias, "frames_dropped": dropped}
