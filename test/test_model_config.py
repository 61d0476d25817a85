"""ClustViTConfig and MergeBudget: paper dimensions, validation, JSON round trip."""
import json
import math

import pytest

from clustvit_ros.model.budget import MergeBudget
from clustvit_ros.model.configs import ClustViTConfig


@pytest.mark.parametrize("name, dims", [
    ("tiny", (192, 12, 3, 768, 774, (512, 512))),
    ("small", (384, 12, 6, 1536, 1548, (512, 512))),
    ("base", (768, 12, 12, 3072, 3096, (512, 512))),
    ("large", (1024, 24, 16, 4096, 4128, (640, 640))),
])
def test_variants_have_the_paper_dimensions(name, dims):
    c = ClustViTConfig.from_variant(name, num_classes=150)
    assert (c.embed_dim, c.depth, c.num_heads, c.mlp_hidden, c.cluster_hidden, c.img_size) == dims
    assert (c.k, c.ip, c.patch_size, c.patch_bias) == (3, 3, 16, False)
    assert (c.head, c.head_layers) == ("mask", 2)
    assert c.mean == c.std == (127.5, 127.5, 127.5)
    assert c.variant == name


def test_overriding_a_dimension_makes_the_variant_custom():
    assert ClustViTConfig.from_variant("large", depth=4, num_classes=2).variant == "custom"
    assert ClustViTConfig.from_variant("small", num_classes=2, k=5).variant == "small"


def test_classes_names_and_palette_are_filled_in_and_round_trip_through_json():
    c = ClustViTConfig.from_variant("tiny", class_names=("sky", "road", "car"), k=2, ip=5)
    assert c.num_classes == 3 and c.palette == ((0, 0, 0), (128, 0, 0), (0, 128, 0))  # VOC colour map
    data = json.loads(json.dumps(c.to_dict()))
    assert ClustViTConfig.from_dict(data) == c
    assert ClustViTConfig(num_classes=2).class_names == ("class_0", "class_1")


@pytest.mark.parametrize("bad, reason", [
    (dict(num_classes=3, palette=((0, 0, 0),)), "palette"),
    (dict(num_classes=2, class_names=("a", "b", "c")), "class names"),
    (dict(num_classes=2, ip=12), "ip"),
    (dict(num_classes=2, embed_dim=100, num_heads=3), "divisible"),
    (dict(num_classes=2, img_size=(500, 512)), "multiple"),
    (dict(num_classes=2, head="fcn"), "head"),
    (dict(num_classes=2, k=-1), "k must"),
    (dict(num_classes=2, palette=((0, 0, 300), (0, 0, 0))), "0..255"),
    (dict(), "num_classes"),
])
def test_invalid_configs_are_rejected_with_a_reason(bad, reason):
    with pytest.raises(ValueError, match=reason):
        ClustViTConfig(**bad)


def test_dense_baseline_ignores_the_injection_point():
    assert ClustViTConfig(num_classes=2, k=0, ip=99).k == 0


def test_from_dict_names_unknown_keys():
    data = ClustViTConfig(num_classes=2).to_dict() | {"bogus": 1}
    with pytest.raises(ValueError, match="bogus"):
        ClustViTConfig.from_dict(data)


def test_merge_budget_validation_and_cap():
    assert MergeBudget() == MergeBudget(1.0, 0.0)
    for bad in [dict(merge_budget=-0.1), dict(merge_budget=1.5), dict(merge_budget=math.nan),
                dict(merge_bias=math.inf), dict(merge_bias=math.nan), dict(merge_budget="1"),
                dict(merge_budget=True)]:
        with pytest.raises(ValueError):
            MergeBudget(**bad)
    assert MergeBudget(0.29).cap(100) == 29
    assert MergeBudget(0.5).cap(1024) == 512
    assert MergeBudget(0.0).cap(10) == 0 and MergeBudget(1.0).cap(10) == 10
    with pytest.raises(AttributeError):
        MergeBudget().merge_budget = 0.5  # frozen: a value object, never shared mutable state
