"""Distillation: the ESPNet teacher's loader and input, the KD loss, the frame rule, the loop."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import clustvit_ros.train.train as loop
from clustvit_ros.train.distill import Distiller, distillation_loss
from clustvit_ros.train.metrics import ConfusionMatrix
from clustvit_ros.train.teacher_espnet import (ESPNET_CAMVID_MEAN_BGR, ESPNET_CAMVID_STD_BGR,
                                               ESPNetTeacher, TeacherWeightsError,
                                               load_espnet_teacher)
from clustvit_ros.train.train import train
from test_train_loop import tiny_config

REPO = Path(__file__).resolve().parents[1]
ESPNET_WEIGHTS = Path(os.environ.get("CLUSTVIT_ESPNET_WEIGHTS",
                                     "/work/espnet/espnet_p_2_q_8_camvid.pth"))
CAMVID_ROOT = Path(os.environ.get("CLUSTVIT_CAMVID_ROOT", REPO.parent / "shared/datasets/camvid"))


def random_teacher(num_classes: int, seed: int = 0) -> ESPNetTeacher:
    """An ESPNet with random weights, BatchNorm statistics and PReLU slopes (so a load that dropped
    any tensor would change its output)."""
    torch.manual_seed(seed)
    model = ESPNetTeacher(num_classes)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(("running_var", "bn.weight", "br.weight", "act.weight")):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith(("running_mean", "bias")):
                tensor.normal_(0.0, 0.1)
    return model.eval()


def save_old_style(model: ESPNetTeacher, path: Path, prefix: str = "") -> dict:
    """The state dict as the released file holds it: no ``num_batches_tracked``, maybe the
    ``module.`` prefix of DataParallel."""
    state = {prefix + k: v for k, v in model.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    torch.save(state, path)
    return state


def test_loader_round_trip_strips_the_dataparallel_prefix(tmp_path):
    model = random_teacher(5)
    save_old_style(model, tmp_path / "t.pth", prefix="module.")
    loaded = load_espnet_teacher(tmp_path / "t.pth")
    assert loaded.num_classes == 5 and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    state = loaded.state_dict()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        out = loaded(x)
        assert out.shape == (2, 5, 32, 48)
        ref = model(x)  # channels-last sums in another order: equal up to rounding
        assert torch.allclose(out, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.pop("encoder.level3.7.d16.conv.weight"),
     r"1 missing tensor\(s\) \['encoder.level3.7"),
    (lambda s: s.__setitem__("encoder.level4.conv.weight", torch.zeros(1)), r"1 unknown tensor"),
    (lambda s: s.__setitem__("br.weight", torch.zeros(7)), r"wrong shape: \['br.weight \(7,\)"),
    (lambda s: s.pop("classifier.weight"), "not ESPNet decoder weights"),
])
def test_loader_refuses_weights_that_do_not_fit(tmp_path, damage, message):
    state = save_old_style(random_teacher(5), tmp_path / "t.pth")
    damage(state)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(TeacherWeightsError, match=message):
        load_espnet_teacher(tmp_path / "bad.pth")


def test_loader_refuses_other_architectures_and_non_state_dicts(tmp_path):
    save_old_style(random_teacher(5), tmp_path / "t.pth")
    with pytest.raises(TeacherWeightsError, match="does not fit ESPNet p=2 q=5"):
        load_espnet_teacher(tmp_path / "t.pth", q=5)
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(TeacherWeightsError, match="not a state dict"):
        load_espnet_teacher(tmp_path / "list.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(TeacherWeightsError, match="not a PyTorch state dict"):
        load_espnet_teacher(tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError, match="do not exist"):
        load_espnet_teacher(tmp_path / "absent.pth")


def test_input_is_bgr_minus_mean_over_std_over_255_and_sides_multiple_of_8():
    teacher = ESPNetTeacher(12)
    image = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    image[:, 0] = 255  # pure red
    x = teacher.normalize(image)
    b, g, r = (float(x[0, c, 0, 0]) for c in range(3))
    assert b == pytest.approx(-ESPNET_CAMVID_MEAN_BGR[0] / ESPNET_CAMVID_STD_BGR[0] / 255)
    assert g == pytest.approx(-ESPNET_CAMVID_MEAN_BGR[1] / ESPNET_CAMVID_STD_BGR[1] / 255)
    assert r == pytest.approx((255 - ESPNET_CAMVID_MEAN_BGR[2]) / ESPNET_CAMVID_STD_BGR[2] / 255)
    with pytest.raises(ValueError, match="multiples of 8"):
        teacher(torch.zeros(1, 3, 36, 48))


def test_kd_loss_matches_a_hand_computation():
    # one image, two classes, 1x2 pixels; T = 2
    student = torch.tensor([[[[0.0, 2.0]], [[2.0, 0.0]]]])
    teacher = torch.tensor([[[[4.0, 0.0]], [[0.0, 0.0]]]])
    masks = torch.zeros(1, 1, 2, dtype=torch.long)
    t = 2.0

    def softmax2(a, b):
        return math.exp(a) / (math.exp(a) + math.exp(b)), math.exp(b) / (math.exp(a) + math.exp(b))

    total = 0.0
    for (s0, s1), (t0, t1) in [((0.0, 2.0), (4.0, 0.0)), ((2.0, 0.0), (0.0, 0.0))]:
        ps, pt = softmax2(s0 / t, s1 / t), softmax2(t0 / t, t1 / t)
        total += sum(q * math.log(q / p) for q, p in zip(pt, ps))
    expected = t * t * total / 2
    loss = distillation_loss(student, teacher, masks, temperature=t)
    assert float(loss) == pytest.approx(expected)


def test_kd_loss_is_zero_when_the_student_is_the_teacher_and_positive_otherwise():
    torch.manual_seed(0)
    logits, masks = torch.randn(2, 4, 8, 8), torch.randint(0, 4, (2, 8, 8))
    same = distillation_loss(logits, logits.clone(), masks, 3.0)
    assert float(same) == pytest.approx(0, abs=1e-6)
    assert float(distillation_loss(torch.randn(2, 4, 8, 8), logits, masks, 3.0)) > 0.01


def test_kd_loss_skips_ignored_pixels_but_counts_them_in_the_mean():
    torch.manual_seed(0)
    student, teacher = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    masks = torch.zeros(1, 4, 4, dtype=torch.long)
    masks[:, 2:] = 255  # the bottom half padded by the crop
    loss = distillation_loss(student, teacher, masks, 2.0)
    other = student.clone()
    other[..., 2:, :] = torch.randn(1, 3, 2, 4) * 10  # anything at the ignored pixels
    assert float(distillation_loss(other, teacher, masks, 2.0)) == pytest.approx(float(loss))
    top = distillation_loss(student[..., :2, :], teacher[..., :2, :], masks[:, :2], 2.0)
    assert float(loss) == pytest.approx(float(top) / 2)  # the kept half, over all 16 pixels


def test_kd_loss_upsamples_the_student_to_the_labels():
    teacher = torch.zeros(1, 2, 8, 8)
    teacher[:, 1] = 10.0
    student = torch.zeros(1, 2, 2, 2)
    student[:, 1] = 10.0
    masks = torch.zeros(1, 8, 8, dtype=torch.long)
    assert float(distillation_loss(student, teacher, masks)) < 1e-6
    assert float(distillation_loss(-student, teacher, masks)) > 1


def test_distiller_drops_a_void_output_and_refuses_other_class_counts():
    teacher = random_teacher(6)
    distiller = Distiller(teacher, num_classes=5, weight=0.5, temperature=2.0)
    images = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(distiller.teacher_logits(images), teacher.logits(images)[:, :5])
    with pytest.raises(ValueError, match="6 outputs, the model 4 classes"):
        Distiller(teacher, num_classes=4, weight=0.5, temperature=2.0)
    with pytest.raises(ValueError, match="at least 5 classes"):
        ESPNetTeacher(4)


def test_training_with_a_teacher_adds_its_term_on_the_same_augmented_batch(tmp_path, monkeypatch):
    save_old_style(random_teacher(9), tmp_path / "teacher.pth")  # 8 synthetic classes + void
    seen = {"student": [], "teacher": [], "teacher_training": []}
    normalize, loss = loop.ClustViT.normalize, Distiller.loss

    def student_input(self, images):
        seen["student"].append(images.clone())
        return normalize(self, images)

    def teacher_input(self, images, student_logits, masks):
        seen["teacher"].append(images.clone())
        seen["teacher_training"].append(self.teacher.training)
        return loss(self, images, student_logits, masks)

    monkeypatch.setattr(loop.ClustViT, "normalize", student_input)
    monkeypatch.setattr(Distiller, "loss", teacher_input)
    teacher = {"distill_teacher": str(tmp_path / "teacher.pth"), "distill_weight": 0.5}
    result = train(tiny_config(tmp_path / "kd", train=teacher), progress=False)
    assert len(seen["teacher"]) == 4 and not any(seen["teacher_training"])
    assert all(torch.equal(a, b) for a, b in zip(seen["student"], seen["teacher"]))
    assert all(e["distill"] > 0 for e in result.history)
    assert all(e["loss"] == pytest.approx(e["seg"] + 0.1 * e["cluster"] + e["distill"], rel=1e-5)
               for e in result.history)
    monkeypatch.setattr(loop.ClustViT, "normalize", normalize)
    plain = train(tiny_config(tmp_path / "plain"), progress=False)
    silent = train(tiny_config(tmp_path / "w0", train={**teacher, "distill_weight": 0.0}),
                   progress=False)  # the teacher draws no random numbers: same run at weight 0
    assert [e["loss"] for e in silent.history] == [e["loss"] for e in plain.history]


@pytest.mark.skipif(not ESPNET_WEIGHTS.is_file(),
                    reason=f"the ESPNet CamVid weights are not at {ESPNET_WEIGHTS} "
                           "(set CLUSTVIT_ESPNET_WEIGHTS)")
def test_the_released_espnet_camvid_weights_load_and_segment_val_frames():
    teacher = load_espnet_teacher(ESPNET_WEIGHTS)
    assert teacher.num_classes == 12
    assert sum(p.numel() for p in teacher.parameters()) == 354_517  # the paper's 0.36 M
    if not (CAMVID_ROOT / "val.txt").is_file():
        pytest.skip(f"no CamVid at {CAMVID_ROOT} (set CLUSTVIT_CAMVID_ROOT)")
    from clustvit_ros.data.formats import CamVid
    val = CamVid(CAMVID_ROOT, "val")
    matrix = ConfusionMatrix(11)
    torch.set_num_threads(1)
    for i in range(0, len(val), 25):  # 5 frames of sequence 0016E5
        assert val.samples[i][0].name.startswith("0016E5_")
        image, mask = val.load(i)
        with torch.no_grad():
            logits = teacher.logits(torch.from_numpy(image).permute(2, 0, 1)[None].contiguous())
        matrix.update(logits[0, :11].argmax(0), torch.from_numpy(mask.astype(np.int64)))
    assert matrix.miou() > 0.6  # RGB order instead of BGR, or no / 255, gives < 0.2
