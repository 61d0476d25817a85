"""Knowledge distillation from a frozen teacher (ESPNet, :mod:`.teacher_espnet`) on training frames.

The teacher sees exactly the augmented batch the student sees. Per pixel the loss is
``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` (Hinton et al.; ``T^2`` keeps the
gradient scale independent of T), at the label resolution like the pixel cross-entropy. Pixels
labelled ``ignore_index`` add nothing: they are the crop's padding (an all-zero image the teacher
never saw) and CamVid's void, which the student has no class for; the mask cannot tell the two
apart. The sum is divided by **all** B*H*W pixels, as :func:`~.losses.segmentation_loss` does, so
``weight`` is measured against the cross-entropy's weight of 1.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

from .teacher_espnet import ESPNetTeacher, load_espnet_teacher


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, masks: Tensor,
                      temperature: float = 1.0, ignore_index: int = 255) -> Tensor:
    """``T^2 * KL(p_teacher || p_student)`` of (B, C, h, w) logits, both upsampled bilinearly to
    the (B, H, W) masks' size, summed over the pixels not labelled ``ignore_index`` and divided by
    B*H*W."""
    if student_logits.shape[:2] != teacher_logits.shape[:2]:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in batch or classes")
    size = masks.shape[-2:]
    s, t = (F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)
            if x.shape[-2:] != size else x.float() for x in (student_logits, teacher_logits))
    log_p_s = F.log_softmax(s / temperature, dim=1)
    log_p_t = F.log_softmax(t / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(1)  # (B, H, W)
    kept = (masks != ignore_index).to(kl.dtype)
    return temperature ** 2 * (kl * kept).sum() / masks.numel()


class Distiller:
    """A frozen teacher and the loss weight and temperature. The teacher's first ``num_classes``
    outputs must be the student's classes; one more output (CamVid's void) is dropped."""

    def __init__(self, teacher: ESPNetTeacher, num_classes: int, weight: float,
                 temperature: float, ignore_index: int = 255) -> None:
        if teacher.num_classes not in (num_classes, num_classes + 1):
            raise ValueError(f"the teacher has {teacher.num_classes} outputs, the model "
                             f"{num_classes} classes: they must be the same classes in the same "
                             "order (one more, a void class last, is dropped)")
        self.teacher = teacher.eval()
        self.num_classes = num_classes
        self.weight = weight
        self.temperature = temperature
        self.ignore_index = ignore_index

    @classmethod
    def from_file(cls, path: str | os.PathLike, num_classes: int, weight: float,
                  temperature: float, ignore_index: int = 255,
                  device: str | torch.device = "cpu") -> "Distiller":
        return cls(load_espnet_teacher(path, device), num_classes, weight, temperature,
                   ignore_index)

    def teacher_logits(self, images: Tensor) -> Tensor:
        """The teacher's (B, num_classes, H, W) logits of a uint8 RGB batch (no gradient)."""
        with torch.no_grad():
            return self.teacher.logits(images)[:, :self.num_classes]

    def loss(self, images: Tensor, student_logits: Tensor, masks: Tensor) -> Tensor:
        """``weight`` x :func:`distillation_loss` of the student on the batch ``images``."""
        return self.weight * distillation_loss(student_logits, self.teacher_logits(images), masks,
                                               self.temperature, self.ignore_index)
