"""Augmentations and evaluation resize policies (mmseg semantics, seeded by a numpy Generator)."""
from __future__ import annotations

import numpy as np
import torch

from clustvit_ros.data import transforms as T

PAL = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)


def scene(h=120, w=160):
    """Image whose colour encodes the label (so alignment can be checked after warps)."""
    mask = np.zeros((h, w), np.uint8)
    mask[: h // 2, w // 3:] = 1
    mask[h // 2:, : w // 2] = 2
    mask[h // 3: h // 3 + 20, w // 2: w // 2 + 30] = 3
    return PAL[mask].copy(), mask


def decode(img: np.ndarray) -> np.ndarray:
    d = ((img[..., None, :].astype(int) - PAL[None, None].astype(int)) ** 2).sum(-1)
    return d.argmin(-1)


def test_rescale_size_matches_mmcv():
    assert T.rescale_size((375, 500), (2048, 512)) == (512, 683)
    assert T.rescale_size((1024, 2048), (2048, 512)) == (512, 1024)
    assert T.rescale_size((100, 4000), (2048, 512)) == (51, 2048)


def test_random_resize_bounds_and_determinism():
    img, mask = scene()
    t = T.RandomResize((2048, 512), (0.5, 2.0))
    sizes = set()
    for s in range(20):
        a_img, a_mask = t(img, mask, np.random.default_rng(s))
        b_img, _ = t(img, mask, np.random.default_rng(s))
        np.testing.assert_array_equal(a_img, b_img)
        h, w = a_img.shape[:2]
        assert a_mask.shape == (h, w) and a_mask.dtype == mask.dtype
        assert 256 <= min(h, w) <= 1024 and abs(w / h - 160 / 120) < 0.02
        assert set(np.unique(a_mask)) <= set(np.unique(mask))  # nearest: no new labels
        sizes.add((h, w))
    assert len(sizes) > 10


def test_random_crop_size_and_cat_max_ratio():
    img = np.zeros((100, 100, 3), np.uint8)
    mask = np.zeros((100, 100), np.uint8)
    mask[:, 50:] = 1
    t = T.RandomCrop((50, 50), cat_max_ratio=0.75)
    for s in range(10):
        ci, cm = t(img, mask, np.random.default_rng(s))
        assert ci.shape == (50, 50, 3) and cm.shape == (50, 50)
        counts = np.bincount(cm.ravel(), minlength=2)
        assert counts.max() / counts.sum() < 0.75
    # Image smaller than the crop: the crop is the image, padding comes later.
    ci, cm = T.RandomCrop((200, 80))(img, mask, np.random.default_rng(0))
    assert ci.shape[:2] == (100, 80) and cm.shape == (100, 80)


def test_cat_max_ratio_ignores_ignore_label():
    mask = np.full((60, 60), 255, np.uint8)
    mask[:, :5] = 1  # only class 1 besides ignore: never satisfiable, gives up after 10 tries
    ci, cm = T.RandomCrop((30, 30), 0.75)(np.zeros((60, 60, 3), np.uint8), mask,
                                         np.random.default_rng(0))
    assert cm.shape == (30, 30)


def test_flip_and_pad():
    img, mask = scene()
    fi, fm = T.RandomFlip(1.0)(img, mask, np.random.default_rng(0))
    np.testing.assert_array_equal(fi, img[:, ::-1])
    np.testing.assert_array_equal(fm, mask[:, ::-1])
    fi, fm = T.RandomFlip(0.0)(img, mask, np.random.default_rng(0))
    assert fi is img and fm is mask
    pi, pm = T.Pad((130, 170))(img, mask)
    assert pi.shape == (130, 170, 3) and pm.shape == (130, 170)
    assert (pi[120:] == 0).all() and (pi[:, 160:] == 0).all()
    assert (pm[120:] == 255).all() and (pm[:, 160:] == 255).all()
    np.testing.assert_array_equal(pm[:120, :160], mask)


def test_photometric_distortion_changes_only_colors():
    img, mask = scene()
    t = T.PhotoMetricDistortion()
    changed = 0
    for s in range(8):
        a, am = t(img, mask, np.random.default_rng(s))
        b, _ = t(img, mask, np.random.default_rng(s))
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.uint8 and a.shape == img.shape and am is mask
        changed += int(not np.array_equal(a, img))
    assert changed >= 6


def test_gaussian_blur_smooths_only_the_image_with_its_probability():
    img, mask = scene()
    always = T.RandomGaussianBlur(1.0, (1.5, 1.5))
    a, am = always(img, mask, np.random.default_rng(0))
    b, _ = always(img, mask, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.uint8 and a.shape == img.shape and am is mask
    # A blur lowers the image's high-frequency energy (squared neighbour differences).
    def edges(x):
        return (np.diff(x.astype(np.int64), axis=1) ** 2).sum()
    assert edges(a) < 0.8 * edges(img)
    never = T.RandomGaussianBlur(0.0)
    assert never(img, mask, np.random.default_rng(0))[0] is img
    blurred = sum(not np.array_equal(T.RandomGaussianBlur(0.5)(img, mask, np.random.default_rng(s))[0], img)
                  for s in range(40))
    assert 10 <= blurred <= 30


def test_to_tensor_convention():
    img, mask = scene()
    ti, tm = T.ToTensor()(img[:, ::-1], mask[:, ::-1])
    assert ti.dtype == torch.uint8 and ti.shape == (3, 120, 160)
    assert tm.dtype == torch.int64 and tm.shape == (120, 160)
    np.testing.assert_array_equal(ti.permute(1, 2, 0).numpy(), img[:, ::-1])


def test_train_pipeline_keeps_image_and_mask_aligned():
    img, mask = scene(180, 240)
    pipe = T.train_pipeline((96, 96), scale=(480, 120), ratio_range=(0.5, 2.0),
                            cat_max_ratio=0.75, photometric=False)
    for s in range(6):
        ti, tm = pipe(img, mask, np.random.default_rng(s))
        assert ti.shape == (3, 96, 96) and tm.shape == (96, 96)
        assert ti.dtype == torch.uint8 and tm.dtype == torch.int64
        im, m = ti.permute(1, 2, 0).numpy(), tm.numpy()
        valid = m != 255
        assert (im[~valid] == 0).all()
        agree = (decode(im)[valid] == m[valid]).mean()
        assert agree > 0.95, agree
    a = pipe(img, mask, np.random.default_rng(42))
    b = pipe(img, mask, np.random.default_rng(42))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_train_pipeline_fixed_size_and_photometric():
    img, mask = scene()
    pipe = T.train_pipeline((64, 64), fixed_size=(64, 64))
    ti, tm = pipe(img, mask, np.random.default_rng(0))
    assert ti.shape == (3, 64, 64) and tm.shape == (64, 64) and int(tm.max()) < 4
