"""Where the packaged default model lives."""
from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_MODEL = "clustvit_default.safetensors"


def default_checkpoint(*share_dirs: str | Path) -> Path:
    """The default model shipped with the package.

    Looked up in ``<share_dir>/models`` for each given share directory (the node passes the one the
    ament index names), then under this interpreter's prefix (``pip install``, the venv build), then
    in the source tree. Returns the first that exists, else the first candidate, so that a missing
    model is reported with the path where it was expected.
    """
    shares = [Path(d) for d in share_dirs] + [Path(sys.prefix) / "share" / "clustvit_ros"]
    candidates = [share / "models" / DEFAULT_MODEL for share in shares]
    candidates.append(Path(__file__).resolve().parents[2] / "models" / DEFAULT_MODEL)
    return next((c for c in candidates if c.is_file()), candidates[0])
