"""Synthetic robot scenes: determinism, variety, class coverage, mask validity, preview."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clustvit_ros.data import SyntheticScenes, render_scene, save_preview, train_pipeline
from clustvit_ros.data.palettes import SYNTHETIC
from clustvit_ros.data.synthetic import CLASSES, PALETTE


def test_classes_and_palette():
    assert CLASSES == ("sky", "ground", "crop", "weed", "obstacle", "person", "tree", "path")
    assert PALETTE.shape == (8, 3) and SYNTHETIC.num_classes == 8
    assert len({tuple(c) for c in PALETTE}) == 8


def test_render_scene_is_pure_function_of_rng_state():
    a = render_scene(np.random.default_rng(7), (48, 64))
    b = render_scene(np.random.default_rng(7), (48, 64))
    c = render_scene(np.random.default_rng(8), (48, 64))
    assert a[0].dtype == np.uint8 and a[0].shape == (48, 64, 3)
    assert a[1].dtype == np.uint8 and a[1].shape == (48, 64)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_dataset_items_depend_only_on_seed_split_index():
    ds = SyntheticScenes(6, size=(40, 56), seed=3, split="val")
    later = ds[4]  # computed first: no hidden sequential state
    fresh = SyntheticScenes(6, size=(40, 56), seed=3, split="val")
    for i in range(5):
        fresh[i]
    again = fresh[4]
    assert later[0].dtype == torch.uint8 and later[0].shape == (3, 40, 56)
    assert later[1].dtype == torch.int64 and later[1].shape == (40, 56)
    assert torch.equal(later[0], again[0]) and torch.equal(later[1], again[1])
    other_seed = SyntheticScenes(6, size=(40, 56), seed=4, split="val")[4]
    train = SyntheticScenes(6, size=(40, 56), seed=3, split="train")[4]
    assert not torch.equal(later[0], other_seed[0])
    assert not torch.equal(later[0], train[0])
    with pytest.raises(IndexError):
        ds.load(6)
    with pytest.raises(ValueError):
        SyntheticScenes(1, split="holdout")


def test_every_class_appears_and_scenes_are_background_dominated():
    ds = SyntheticScenes(200, size=(64, 80), seed=0)
    counts = np.zeros(8, np.int64)
    present = np.zeros(8, np.int64)
    for i in range(len(ds)):
        img, mask = ds.load(i)
        assert mask.min() >= 0 and mask.max() < 8
        c = np.bincount(mask.ravel(), minlength=8)
        counts += c
        present += c > 0
    assert (present > 0).all(), dict(zip(CLASSES, present))
    frac = counts / counts.sum()
    background = frac[[0, 1, 6, 7]].sum()  # sky, ground, tree, path
    assert background > 0.6, dict(zip(CLASSES, frac.round(3)))
    # Every class shows up in a reasonable share of scenes, not just once.
    assert (present >= 10).all(), dict(zip(CLASSES, present))


def test_images_are_not_flat_and_mask_matches_image_structure():
    img, mask = render_scene(np.random.default_rng(11), (96, 128))
    assert img.std() > 10
    # Sky is above ground on average: the top row is mostly sky or tree, the bottom row is not sky.
    assert np.isin(mask[0], [0, 6, 5, 4]).mean() > 0.5
    assert (mask[-1] != 0).all()


def test_with_train_transform():
    ds = SyntheticScenes(2, size=(64, 64), seed=1,
                         transform=train_pipeline((48, 48), scale=None, cat_max_ratio=0.75))
    img, mask = ds[0]
    assert img.shape == (3, 48, 48) and mask.shape == (48, 48)
    assert torch.equal(ds[0][0], img)


def test_save_preview(tmp_path):
    out = tmp_path / "preview.png"
    save_preview(out, n=2, seed=0, size=(32, 48))
    assert out.stat().st_size > 1000
