"""The inference engine: image in, label map + cost out, on whatever device this machine has."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clustvit_ros.data.palettes import LabelsError
from clustvit_ros.data.synthetic_render import render_scene
from clustvit_ros.model.budget import MergeBudget
from clustvit_ros.model.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from clustvit_ros.model.pixels import logits_to_pixels
from clustvit_ros.model.segmentor import ClustViT
from clustvit_ros.runtime import engine as engine_module
from clustvit_ros.runtime import label_map
from clustvit_ros.runtime import timing
from clustvit_ros.runtime.block_argmax import block_argmax
from clustvit_ros.runtime.block_graphs import BlockGraphs
from clustvit_ros.runtime.device import device_scope, resolve_device, resolve_dtype
from clustvit_ros.runtime.engine import Engine, model_input_size
from support.models import CLASSES, make_checkpoint, tiny_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def engine(checkpoint):
    return Engine(checkpoint, device="cpu")


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("hw", [(64, 64), (48, 80), (37, 101), (480, 640)])
def test_labels_come_back_at_input_resolution(engine, hw):
    result = engine.run(_image(*hw))
    assert result.labels.shape == hw and result.labels.dtype == np.uint8
    assert result.labels.max() < len(CLASSES)
    assert result.model_hw == (64, 64)  # fixed policy: the model's training size
    assert min(result.preprocess_ms, result.inference_ms, result.postprocess_ms) >= 0


def test_same_image_same_labels_and_budget_zero_costs_the_dense_model(engine):
    image = _image(64, 64, seed=1)
    a, b = engine.run(image, MergeBudget(0.0)), engine.run(image, MergeBudget(0.0))
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.stats.dense[0] and a.gflops == pytest.approx(a.dense_gflops, rel=1e-9)
    merged = engine.run(image, MergeBudget(1.0, merge_bias=10.0))
    assert merged.stats.merged_tokens[0] == merged.stats.patch_tokens
    assert merged.dense_gflops == a.dense_gflops


def test_resize_policies():
    assert model_input_size((480, 640), "fixed", (512, 512)) == (512, 512)
    assert model_input_size((480, 640), "keep_aspect", (256, 256)) == (256, 341)
    assert model_input_size((37, 101), "none", (512, 512)) == (37, 101)
    with pytest.raises(ValueError, match="resize must be one of"):
        model_input_size((1, 1), "stretch", (1, 1))


def test_native_resolution_pads_to_patches_and_costs_more(checkpoint):
    engine = Engine(checkpoint, device="cpu", resize="none")
    small, big = engine.run(_image(40, 50)), engine.run(_image(120, 150))
    assert small.labels.shape == (40, 50) and big.labels.shape == (120, 150)
    assert small.stats.grid == (3, 4) and big.stats.grid == (8, 10)
    assert big.dense_gflops > small.dense_gflops


def test_device_and_dtype_fall_back_with_a_warning():
    device, warnings = resolve_device("cpu")
    assert device.type == "cpu" and not warnings
    if not torch.cuda.is_available():
        for spec in ("auto", "cuda", "cuda:1"):
            device, warnings = resolve_device(spec)
            assert device.type == "cpu" and len(warnings) == 1 and "CPU" in warnings[0]
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("gpu0")
    dtype, warnings = resolve_dtype("fp16", torch.device("cpu"))
    assert dtype == torch.float32 and "fp16" in warnings[0]
    assert resolve_dtype("bf16", torch.device("cpu")) == (torch.bfloat16, [])
    with pytest.raises(ValueError, match="dtype must be"):
        resolve_dtype("int8", torch.device("cpu"))


def test_bf16_engine_runs_on_the_cpu(checkpoint):
    engine = Engine(checkpoint, device="cpu", dtype="bf16")
    result = engine.run(_image(64, 64), MergeBudget(1.0, merge_bias=1.0))
    assert result.labels.shape == (64, 64) and engine.dtype == torch.bfloat16


def test_missing_and_corrupt_checkpoints_name_the_file(tmp_path):
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(CheckpointError, match="nowhere.safetensors"):
        Engine(missing, device="cpu")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt.safetensors"):
        Engine(corrupt, device="cpu")


def test_labels_file_overrides_names_and_palette(checkpoint, tmp_path):
    labels = tmp_path / "labels.yaml"
    labels.write_text("classes:\n" + "".join(f"  - {{name: c{i}, color: [{i}, {2 * i}, {3 * i}]}}\n"
                                            for i in range(4)))
    engine = Engine(checkpoint, device="cpu", labels_file=labels)
    assert engine.classes.names == ("c0", "c1", "c2", "c3")
    np.testing.assert_array_equal(engine.classes.palette[3], [3, 6, 9])
    labels.write_text("classes:\n  - {name: only, color: [1, 2, 3]}\n")
    with pytest.raises(LabelsError, match="lists 1 classes but the model has 4"):
        Engine(checkpoint, device="cpu", labels_file=labels)


def test_engine_labels_equal_the_model_forward(engine):
    """The engine's single upsample gives the model's own segmentation at the model's input size."""
    image = _image(64, 64, seed=9)
    x = (torch.from_numpy(image).permute(2, 0, 1)[None].float() - 127.5) / 127.5
    with torch.inference_mode():
        expected = engine.model(x).logits.argmax(1)[0].numpy()
    np.testing.assert_array_equal(engine.run(image).labels, expected)


def test_engine_and_training_forward_share_normalisation_and_padding_geometry(checkpoint):
    """An input that is not a multiple of 16: the engine's labels are the training forward's argmax."""
    engine = Engine(checkpoint, device="cpu", resize="none")
    image = _image(37, 61, seed=3)
    rgb = torch.from_numpy(image).permute(2, 0, 1)[None]
    with torch.inference_mode():
        expected = engine.model(engine.model.normalize(rgb)).logits.argmax(1)[0].numpy()
    np.testing.assert_array_equal(engine.run(image).labels, expected)


def test_close_frees_the_model(checkpoint):
    import weakref

    engine = Engine(checkpoint, device="cpu")
    engine.run(_image(64, 64))
    model = weakref.ref(engine.model)
    engine.close()
    assert model() is None, "something still holds the model"
    with pytest.raises(AttributeError):
        engine.run(_image(64, 64))


def _reachable(root, seen=None):
    """Every object reachable from `root` through attributes, dicts, lists, tuples and sets."""
    seen = set() if seen is None else seen
    if id(root) in seen or isinstance(root, (str, bytes, int, float, bool, type(None), np.ndarray)):
        return
    seen.add(id(root))
    yield root
    if isinstance(root, dict):
        children = [*root.keys(), *root.values()]
    elif isinstance(root, (list, tuple, set, frozenset)):
        children = list(root)
    elif isinstance(root, torch.Tensor) or not hasattr(root, "__dict__"):
        children = []
    else:
        children = list(vars(root).values())
    for child in children:
        yield from _reachable(child, seen)


def test_close_drops_every_reference_to_the_model_and_the_block_graphs(checkpoint):
    """With `cuda_graphs` the engine also holds the graphs, their buffers and pool: close() must let
    all of it go, or cleanup frees no GPU memory."""
    import weakref

    engine = Engine(checkpoint, device="cpu")
    engine.block_graphs = BlockGraphs(engine.model, capture=False)  # what cuda_graphs holds, without a GPU
    engine.run(_image(64, 64), MergeBudget(1.0, merge_bias=10.0))
    held = [weakref.ref(o) for o in (engine.model, engine.block_graphs, engine._normalize)]
    engine.close()
    assert [ref() for ref in held] == [None, None, None], "something still holds the model or its graphs"
    left = [o for o in _reachable(engine) if isinstance(o, (torch.Tensor, torch.nn.Module, BlockGraphs))]
    assert not left, left


class _FakeEvent:
    """A CUDA event that records which stream it was recorded on (no GPU needed)."""

    def __init__(self, enable_timing=False):
        self.stream = None

    def record(self, stream=None):
        self.stream = stream

    def synchronize(self):
        pass

    def elapsed_time(self, other):
        return 1.0


def test_stage_timings_on_cuda_n_are_recorded_on_that_devices_stream(monkeypatch):
    """On cuda:1 the current device may be cuda:0; events on its stream would not time cuda:1's work."""
    monkeypatch.setattr(timing.torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(timing.torch.cuda, "current_stream", lambda device=None: ("stream of", device))
    clock = timing.StageClock(torch.device("cuda", 1))
    events = []
    for _ in range(3):
        clock.mark()
        events.append(clock._marks[-1])
    assert clock.durations_ms() == [1.0, 1.0]
    assert [e.stream for e in events] == [("stream of", torch.device("cuda", 1))] * 3


def test_a_frame_runs_with_the_engines_device_current(engine, monkeypatch):
    scopes = []

    def recording_scope(device):
        scopes.append(device)
        return device_scope(device)

    monkeypatch.setattr(engine_module, "device_scope", recording_scope)
    engine.run(_image(64, 64))
    assert scopes == [engine.device]
    assert device_scope(torch.device("cuda", 1)).idx == 1  # torch.cuda.device(1): current while a frame runs
    with device_scope(torch.device("cpu")):
        pass


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_a_merged_frame_synchronises_the_host_twice(checkpoint, cuda_graphs):
    """The kept-token count (one read for the whole frame) and the labels' copy to the host; the
    dense path only the copy. Counted by torch's sync debug mode, on a frame after the first."""
    engine = Engine(checkpoint, device="cuda", cuda_graphs=cuda_graphs)
    image = _image(64, 64)
    for budget, expected in ((MergeBudget(0.0), 1), (MergeBudget(1.0, merge_bias=10.0), 2)):
        engine.run(image, budget)
        syncs = timing.host_syncs(lambda: engine.run(image, budget))
        assert len(syncs) == expected, (budget, syncs)


@pytest.fixture(scope="module")
def fpn_checkpoint(tmp_path_factory):
    """An fpn model briefly trained on synthetic scenes: logits with class boundaries, BatchNorms
    with statistics (folding them at load matters)."""
    torch.manual_seed(0)
    model = ClustViT(tiny_config(stem="conv", head="fpn", fpn_channels=16))
    scenes = [render_scene(np.random.default_rng(i), (64, 64)) for i in range(4)]
    images = torch.stack([torch.from_numpy(rgb).permute(2, 0, 1) for rgb, _ in scenes])
    masks = torch.stack([torch.from_numpy(mask).long() % len(CLASSES) for _, mask in scenes])
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(30):
        loss = F.cross_entropy(model(model.normalize(images)).logits, masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = tmp_path_factory.mktemp("fpn") / "fpn.safetensors"
    save_checkpoint(model.eval(), path)
    return path


@pytest.mark.parametrize("resize, hw, by_blocks", [("none", (37, 61), False), ("none", (497, 611), False),
                                                  ("fixed", (497, 611), True)])
def test_fpn_engine_labels_are_the_checkpoints_own_forward(fpn_checkpoint, resize, hw, by_blocks, monkeypatch):
    """Quarter-patch logits through the engine (BatchNorms folded at load, channels-last stem) and
    both label-map paths: every class at once while a logit cell covers few pixels, block by block
    where it covers many (a 64 x 64 model input shown on a 497 x 611 image). Each pixel gets the
    unfolded model's best class, up to float rounding."""
    blocks = []
    monkeypatch.setattr(label_map, "block_argmax",
                        lambda *a, **kw: blocks.append(a[0].shape) or block_argmax(*a, **kw))
    engine = Engine(fpn_checkpoint, device="cpu", resize=resize)
    image = render_scene(np.random.default_rng(5), hw)[0]
    result = engine.run(image)
    model = load_checkpoint(fpn_checkpoint)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=result.model_hw, mode="bilinear", align_corners=False)
    with torch.inference_mode():
        padded = model.pad_to_patches(model.normalize(x))
        feats = model.forward_features(padded)
        cells = model.forward_head(feats.tokens, feats.grid, feats.skips)
        logits = logits_to_pixels(cells, padded.shape[-2:], result.model_hw, hw)[0]
    assert cells.shape[-2:] == (padded.shape[-2] // 4, padded.shape[-1] // 4)
    assert blocks == ([cells.shape] if by_blocks else [])
    labels = torch.from_numpy(result.labels).long()
    assert len(labels.unique()) > 1
    best, chosen = logits.max(0).values, logits.gather(0, labels[None])[0]
    assert torch.all(best - chosen <= 1e-4 * (1 + best.abs()))
    assert (labels == logits.argmax(0)).float().mean() > 0.999
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in engine.model.modules())
