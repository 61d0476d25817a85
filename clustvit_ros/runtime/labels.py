"""Class names and colours: loading a labels file, colourising masks, blending overlays."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml


class LabelsError(ValueError):
    """A labels file that cannot be used; the message names the file and the problem."""


def load_labels(path: str | Path, num_classes: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Read a labels YAML (``classes: [{name: sky, color: [r, g, b]}, ...]``).

    Returns the names and a (num_classes, 3) uint8 RGB palette. The file must list exactly one entry
    per model class, in class-id order.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise LabelsError(f"labels file {path}: {exc}") from exc
    entries = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise LabelsError(f"labels file {path}: expected a top-level 'classes' list")
    if len(entries) != num_classes:
        raise LabelsError(f"labels file {path}: lists {len(entries)} classes but the model has {num_classes}")
    names, colours = [], []
    for i, entry in enumerate(entries):
        colour = entry.get("color") if isinstance(entry, dict) else None
        if (not isinstance(entry.get("name") if isinstance(entry, dict) else None, str)
                or not isinstance(colour, list) or len(colour) != 3
                or not all(isinstance(c, int) and 0 <= c <= 255 for c in colour)):
            raise LabelsError(f"labels file {path}: entry {i} needs a 'name' and a 'color' of three 0-255 ints")
        names.append(entry["name"])
        colours.append(colour)
    return tuple(names), np.asarray(colours, dtype=np.uint8)


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """HxW class ids -> HxWx3 uint8 RGB through the palette (one table look-up)."""
    return palette[labels]


def blend(rgb: np.ndarray, colour: np.ndarray, alpha: float) -> np.ndarray:
    """Alpha-blend the colourised mask over the image: (1 - alpha) * image + alpha * mask."""
    return cv2.addWeighted(rgb, 1.0 - alpha, colour, alpha, 0.0)
