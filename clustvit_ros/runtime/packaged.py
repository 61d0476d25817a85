"""What the package ships besides code: its models (selectable by name) and the demo camera's
sample frames, looked up in the installed share directory or the source tree."""
from __future__ import annotations

import sys
from pathlib import Path

#: Packaged model name -> file in ``models/``. ``camvid``: real road scenes (CamVid, licence
#: CC BY-NC 4.0); ``synthetic``: the synthetic robot scenes of ``data/synthetic.py``.
PACKAGED_MODELS = {"camvid": "clustvit_camvid.safetensors",
                   "synthetic": "clustvit_synthetic.safetensors"}
DEFAULT_MODEL = "camvid"
#: The demo camera's sample frames (CamVid val, sequence 0016E5), relative to the share folder.
SAMPLE_FRAMES = "data/camvid_val"


def share_path(relative: str, *share_dirs: str | Path) -> Path:
    """``relative`` under the first of these that has it: each given share directory (the ROS layer
    passes the one the ament index names), this interpreter's prefix (the venv build), the source
    tree. Else the first candidate, so that a missing file is reported where it was expected."""
    shares = [Path(d) for d in share_dirs] + [Path(sys.prefix) / "share" / "clustvit_ros",
                                               Path(__file__).resolve().parents[2]]
    candidates = [share / relative for share in shares]
    return next((c for c in candidates if c.exists()), candidates[0])


def resolve_checkpoint(value: str | Path, *share_dirs: str | Path) -> Path:
    """The model file a ``checkpoint`` setting names: empty = the default packaged model, a
    packaged model's name (see :data:`PACKAGED_MODELS`), anything else a path."""
    name = str(value) or DEFAULT_MODEL
    if name in PACKAGED_MODELS:
        return share_path(f"models/{PACKAGED_MODELS[name]}", *share_dirs)
    return Path(name).expanduser()


def default_checkpoint(*share_dirs: str | Path) -> Path:
    """The default packaged model (:data:`DEFAULT_MODEL`)."""
    return resolve_checkpoint("", *share_dirs)
