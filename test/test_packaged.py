"""Packaged files: models by name or path, the demo camera's sample frames."""
from __future__ import annotations

from pathlib import Path

from clustvit_ros.runtime.packaged import (DEFAULT_MODEL, PACKAGED_MODELS, SAMPLE_FRAMES,
                                           default_checkpoint, resolve_checkpoint, share_path)

REPO = Path(__file__).resolve().parents[1]


def test_packaged_models_resolve_by_name_and_paths_pass_through(tmp_path):
    for name, file in PACKAGED_MODELS.items():
        path = resolve_checkpoint(name)
        assert path.name == file
    assert resolve_checkpoint("synthetic").is_file() and resolve_checkpoint("camvid").is_file()
    assert default_checkpoint() == resolve_checkpoint("") == resolve_checkpoint(DEFAULT_MODEL)
    own = tmp_path / "mine.safetensors"
    assert resolve_checkpoint(str(own)) == own
    assert resolve_checkpoint("~/m.safetensors") == Path.home() / "m.safetensors"


def test_a_share_directory_given_first_wins(tmp_path):
    (tmp_path / "models").mkdir()
    mine = tmp_path / "models" / PACKAGED_MODELS["synthetic"]
    mine.write_bytes(b"")
    assert resolve_checkpoint("synthetic", tmp_path) == mine
    missing = tmp_path / "nowhere"
    assert share_path("models/none.safetensors", missing) == missing / "models/none.safetensors"


def test_sample_frames_ship_in_order_with_their_attribution():
    folder = share_path(SAMPLE_FRAMES)
    frames = sorted(folder.glob("*.jpg"))
    assert len(frames) >= 24 and all(f.name.startswith("0016E5_") for f in frames)
    readme = (folder / "README.md").read_text()
    assert "BY-NC" in readme and "Brostow" in readme
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 8 * 2**20
