"""The runtime merge knobs: a value object passed with each forward call (never global state)."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


@dataclass(frozen=True)
class MergeBudget:
    """How aggressively one forward call merges tokens.

    ``merge_budget`` in [0, 1]: 0 runs the dense path (the Cluster module is not run, the frame
    costs exactly the plain ViT); 1 is the model's own decision (the paper); in between at most
    ``floor(merge_budget * P)`` of the P patch tokens are merged, those with the largest margin.
    ``merge_bias`` is added to every merge margin ``max_{j>=1} L[j] - L[0]``: positive merges more,
    negative less. A token merges iff its biased margin is > 0 (ties keep, like the paper's argmax).
    Defaults reproduce the paper exactly.
    """

    merge_budget: float = 1.0
    merge_bias: float = 0.0

    def __post_init__(self) -> None:
        for name in ("merge_budget", "merge_bias"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not 0.0 <= self.merge_budget <= 1.0:  # also rejects NaN
            raise ValueError(f"merge_budget must be in [0, 1], got {self.merge_budget}")
        if not math.isfinite(self.merge_bias):
            raise ValueError(f"merge_bias must be finite, got {self.merge_bias}")

    def cap(self, num_patches: int) -> int:
        """The most tokens this budget lets a frame of ``num_patches`` patch tokens merge."""
        if self.merge_budget >= 1.0:
            return num_patches
        # The epsilon absorbs binary rounding (0.29 * 100 = 28.999...) without crossing an integer.
        return min(num_patches, math.floor(self.merge_budget * num_patches + 1e-9))
