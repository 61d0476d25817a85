"""Cluster module, merge and Regenerator (docs/model.md, "Architecture") and the merge budget."""
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from clustvit_ros.model.budget import MergeBudget
from clustvit_ros.model.cluster import Regenerator, merge
from clustvit_ros.model.configs import ClustViTConfig
from clustvit_ros.model.segmentor import ClustViT


def tiny(k=3, ip=1, depth=3, seed=0, **kw) -> ClustViT:
    """A small random ClustViT whose cluster margins are spread widely (varied merge counts)."""
    torch.manual_seed(seed)
    cfg = ClustViTConfig(embed_dim=32, depth=depth, num_heads=2, mlp_hidden=64, cluster_hidden=24,
                         img_size=(64, 64), num_classes=4, k=k, ip=ip, **kw)
    model = ClustViT(cfg).eval()
    if k:
        with torch.no_grad():
            model.cluster.fc2.weight.normal_(0, 0.5)
    return model


def images(n=1, h=48, w=64, seed=1) -> torch.Tensor:
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_merge_builds_the_short_sequence_and_unmerge_restores_the_full_grid():
    torch.manual_seed(0)
    p, d, k = 12, 8, 4
    x = torch.randn(1, 1 + p, d)
    merge_mask = torch.tensor([[0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0]], dtype=torch.bool)
    best = torch.tensor([[3, 0, 2, 1, 1, 0, 0, 2, 0, 3, 2, 1]])  # cluster index 0..k-1
    out, plan = merge(x, merge_mask, best, k)
    kept_idx = [0, 3, 4, 6, 9, 11]
    z = x[0, 1:]
    assert out.shape == (1, 1 + len(kept_idx) + k, d)
    assert torch.equal(out[0, 0], x[0, 0])
    assert torch.equal(out[0, 1:1 + len(kept_idx)], z[kept_idx])  # raster order
    means = out[0, 1 + len(kept_idx):]
    torch.testing.assert_close(means[0], z[[1, 5, 8]].mean(0))
    torch.testing.assert_close(means[2], z[[2, 7, 10]].mean(0))
    assert torch.equal(means[1], torch.zeros(d)) and torch.equal(means[3], torch.zeros(d))  # empty
    assert plan.kept == [6] and plan.clusters_used == [2] and plan.key_valid is None

    processed = torch.randn_like(out)  # stands in for blocks ip..L-1
    regen = Regenerator(d)
    full = plan.unmerge(processed, regen)
    assert full.shape == (1, 1 + p, d)
    assert torch.equal(full[0, 0], processed[0, 0])
    assert torch.equal(full[0, 1:][kept_idx], processed[0, 1:1 + len(kept_idx)])  # bit-identical
    clusters = processed[0, 1 + len(kept_idx):]
    for i in (1, 2, 5, 7, 8, 10):
        expected = regen(torch.cat([z[i], clusters[best[0, i]]]))
        torch.testing.assert_close(full[0, 1 + i], expected)


def test_merge_returns_none_when_no_image_merges():
    x = torch.randn(2, 5, 4)
    nothing = torch.zeros(2, 4, dtype=torch.bool)
    assert merge(x, nothing, torch.zeros(2, 4, dtype=torch.long), 2) is None


def test_every_k_and_every_injection_point_runs():
    x = images(h=32, w=48)
    for k in range(1, 6):
        for ip in range(4):
            model = tiny(k=k, ip=ip, depth=4)
            with torch.no_grad():
                out = model(x, MergeBudget(0.5))
            s = out.stats
            assert out.logits.shape == (1, 4, 32, 48) and torch.isfinite(out.logits).all()
            assert out.cluster_logits.shape == (1, 6, k + 1)
            assert s.patch_tokens == 6 and s.kept_tokens[0] + s.merged_tokens[0] == 6
            assert s.merged_tokens[0] <= 3 and s.clusters_used[0] <= k


class ForceKeep(nn.Module):
    """Wraps a Cluster module: images whose tokens have a large mean norm keep every token."""

    def __init__(self, inner: nn.Module, threshold: float) -> None:
        super().__init__()
        self.inner, self.threshold = inner, threshold

    def forward(self, z):
        logits = self.inner(z)
        loud = (z.norm(dim=-1).mean(dim=1) > self.threshold).to(z.dtype)
        return logits + F.pad(1e4 * loud[:, None, None], (0, logits.shape[-1] - 1))


def test_a_batch_gives_each_image_the_same_output_as_running_it_alone():
    model = tiny(k=3, ip=1)
    x = images(5, 48, 80)
    x[3] *= 50  # this one will merge nothing: a dense image inside a merging batch
    norms = []
    hook = model.cluster.register_forward_hook(
        lambda m, i, o: norms.append(i[0].norm(dim=-1).mean(1)))
    with torch.no_grad():
        model(x)
    hook.remove()
    normal = torch.cat([norms[0][:3], norms[0][4:]])
    assert norms[0][3] > 2 * normal.max()
    model.cluster = ForceKeep(model.cluster, float((norms[0][3] + normal.max()) / 2))
    for budget in (MergeBudget(), MergeBudget(0.6, -0.5)):
        with torch.no_grad():
            batch = model(x, budget)
            alone = [model(x[i:i + 1], budget) for i in range(5)]
        kept = batch.stats.kept_tokens
        assert len(set(kept)) > 2 and kept[3] == 15 and batch.stats.dense[3]  # padding is exercised
        for i, one in enumerate(alone):
            assert one.stats.kept_tokens == [kept[i]] and one.stats.dense == [batch.stats.dense[i]]
            assert one.stats.clusters_used == [batch.stats.clusters_used[i]]
            torch.testing.assert_close(one.logits[0], batch.logits[i], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(one.cluster_logits[0], batch.cluster_logits[i])


def test_a_batch_that_keeps_different_counts_copies_nothing_from_the_host(monkeypatch):
    """Undoing the merge of a padded batch uses the kept counts already on the device: building a
    tensor from the host's list would be a host-to-device copy on every such frame on a GPU."""
    model = tiny(k=3, ip=1)
    x = images(4, 48, 80)
    x[1] *= 50

    def no_host_tensor(*args, **kwargs):
        raise AssertionError("a tensor built from host data during the forward")

    with torch.no_grad():
        expected = model(x, MergeBudget(0.6, -0.5))
        assert len(set(expected.stats.kept_tokens)) > 1  # images keep different counts: padded slots
        monkeypatch.setattr(torch, "tensor", no_host_tensor)
        again = model(x, MergeBudget(0.6, -0.5))
    torch.testing.assert_close(again.logits, expected.logits)


def test_budget_zero_is_exactly_the_plain_vit():
    model = tiny()
    dense = ClustViT(ClustViTConfig.from_dict(model.config.to_dict() | {"k": 0})).eval()
    missing, unexpected = dense.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all(k.startswith(("cluster.", "regenerator.")) for k in unexpected)
    x = images(2)
    calls = []
    model.cluster.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        out, ref = model(x, MergeBudget(0.0)), dense(x)
    assert not calls and out.cluster_logits is None
    assert out.stats.dense == [True, True] and not out.stats.cluster_run
    assert torch.equal(out.logits, ref.logits)


def test_budget_one_is_the_paper_argmax_and_a_cap_merges_the_largest_margins():
    model = tiny()
    x = images()
    with torch.no_grad():
        full = model(x)
    logits = full.cluster_logits[0]
    paper_merge = logits.argmax(-1) != 0
    p = logits.shape[0]
    assert full.stats.merged_tokens == [int(paper_merge.sum())] and 0 < paper_merge.sum() < p
    margin = logits[:, 1:].max(-1).values - logits[:, 0]
    for budget in (0.1, 0.25, 0.5, 0.9):
        with torch.no_grad():
            out = model(x, MergeBudget(budget))
        cap = int(budget * p)
        assert out.stats.merged_tokens == [min(cap, int(paper_merge.sum()))]
        assert torch.equal(out.cluster_logits, full.cluster_logits)
    # which tokens: rerun the decision directly
    from clustvit_ros.model.cluster import decide
    merged, best = decide(full.cluster_logits, MergeBudget(0.25))
    chosen = margin[merged[0]]
    assert chosen.min() >= margin[~merged[0]].max() and (chosen > 0).all()
    assert torch.equal(best[0] + 1, logits[:, 1:].argmax(-1) + 1)


MONO_MODEL = tiny(seed=3)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), b1=st.floats(0, 1), b2=st.floats(0, 1),
       bias1=st.floats(-3, 3), bias2=st.floats(-3, 3))
def test_raising_budget_or_bias_never_increases_kept_tokens(seed, b1, b2, bias1, bias2):
    model = MONO_MODEL
    x = images(1, 32, 64, seed=seed)
    (b1, b2), (bias1, bias2) = sorted((b1, b2)), sorted((bias1, bias2))
    kept = []
    with torch.no_grad():
        for budget in (MergeBudget(b1, bias1), MergeBudget(b2, bias1), MergeBudget(b2, bias2)):
            kept.append(model(x, budget).stats.kept_tokens[0])
    assert kept[0] >= kept[1] >= kept[2]


def test_a_frame_that_merges_nothing_takes_the_dense_path():
    model = tiny()
    x = images()
    with torch.no_grad():
        out = model(x, MergeBudget(1.0, -1e4))
        ref = model(x, MergeBudget(0.0))
    assert out.stats.dense == [True] and out.stats.cluster_run and out.cluster_logits is not None
    assert torch.equal(out.logits, ref.logits)


def test_a_uniform_frame_whose_tokens_all_join_one_cluster_is_merged():
    """Departure from the official whole-batch 'one distinct id' fallback (documented)."""
    model = tiny(k=3)
    with torch.no_grad():
        model.cluster.fc2.weight.zero_()
        model.cluster.fc2.bias.copy_(torch.tensor([0.0, 5.0, 0.0, 0.0]))
        out = model(torch.zeros(1, 3, 48, 48))
    assert out.stats.kept_tokens == [0] and out.stats.clusters_used == [1]
    assert out.stats.dense == [False]


def test_gradients_reach_backbone_and_regenerator_while_the_cluster_mlp_learns_only_from_aux():
    model = tiny(k=3, ip=1, depth=3).train()
    out = model(images(2), MergeBudget())
    assert 0 < sum(out.stats.merged_tokens)
    out.logits.square().mean().backward()  # any segmentation loss
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in ("encoder.patch_embed.proj.weight", "encoder.pos_embed",
                 "encoder.blocks.0.mlp.fc1.weight", "encoder.blocks.2.attn.qkv.weight",
                 "regenerator.fc1.weight", "regenerator.fc2.weight", "head.cls_emb"):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    assert all(grads[n] is None for n in grads if n.startswith("cluster."))
    model.zero_grad(set_to_none=True)
    out = model(images(2), MergeBudget())
    target = torch.randint(0, 4, out.cluster_logits.shape[:2])
    F.cross_entropy(out.cluster_logits.flatten(0, 1), target.flatten()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in model.named_parameters() if n.startswith("cluster."))
