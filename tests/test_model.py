import math

import torch

from grokscope.config import ModelConfig, RunConfig
from grokscope.models import make_model
from grokscope.models.transformer import Transformer
from grokscope.tasks import make_task

# Pinned against docs/DESIGN.md: TransformerLens names and shapes for the canonical config.
CANONICAL_SHAPES = {
    "embed.W_E": (114, 128), "pos_embed.W_pos": (3, 128),
    "blocks.0.attn.W_Q": (4, 128, 32), "blocks.0.attn.W_K": (4, 128, 32), "blocks.0.attn.W_V": (4, 128, 32),
    "blocks.0.attn.W_O": (4, 32, 128), "blocks.0.mlp.W_in": (128, 512), "blocks.0.mlp.b_in": (512,),
    "blocks.0.mlp.W_out": (512, 128), "blocks.0.mlp.b_out": (128,), "unembed.W_U": (128, 113),
}
HOOKS_1L = [
    "blocks.0.attn.hook_attn_scores", "blocks.0.attn.hook_k", "blocks.0.attn.hook_pattern", "blocks.0.attn.hook_q",
    "blocks.0.attn.hook_v", "blocks.0.attn.hook_z", "blocks.0.hook_attn_out", "blocks.0.hook_mlp_out",
    "blocks.0.hook_resid_mid", "blocks.0.hook_resid_post", "blocks.0.hook_resid_pre", "blocks.0.mlp.hook_post",
    "blocks.0.mlp.hook_pre", "hook_embed", "hook_pos_embed",
]


def canonical():
    cfg = RunConfig()
    return make_model(cfg, make_task(cfg.task))


def test_parameter_names_and_shapes_match_design():
    shapes = {n: tuple(p.shape) for n, p in canonical().named_parameters()}
    assert shapes == CANONICAL_SHAPES


def test_hook_names_are_pinned():
    assert sorted(canonical().hook_points()) == HOOKS_1L


def test_optional_parameters():
    m = Transformer(ModelConfig(attn_bias=True, unembed_bias=True, normalization="LN", n_layers=2), 10, 9, 3)
    names = set(dict(m.named_parameters()))
    assert {"blocks.1.attn.b_Q", "blocks.0.attn.b_O", "unembed.b_U", "blocks.0.ln1.w", "ln_final.b"} <= names
    attn_only = Transformer(ModelConfig(attn_only=True), 10, 9, 3)
    assert not any(".mlp." in n for n in dict(attn_only.named_parameters()))


def naive_forward(params: dict, tokens: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The DESIGN.md forward written out with loops over heads and positions, for one example."""
    W_E, W_pos = params["embed.W_E"], params["pos_embed.W_pos"]
    resid = torch.stack([W_E[t] + W_pos[i] for i, t in enumerate(tokens.tolist())])  # [pos d_model]
    n = len(resid)
    attn_out = torch.zeros_like(resid)
    for h in range(n_heads):
        q = resid @ params["blocks.0.attn.W_Q"][h]
        k = resid @ params["blocks.0.attn.W_K"][h]
        v = resid @ params["blocks.0.attn.W_V"][h]
        for i in range(n):
            s = torch.stack([q[i] @ k[j] / math.sqrt(q.shape[-1]) for j in range(i + 1)])
            a = torch.softmax(s, 0)
            z = sum(a[j] * v[j] for j in range(i + 1))
            attn_out[i] += z @ params["blocks.0.attn.W_O"][h]
    resid = resid + attn_out
    pre = resid @ params["blocks.0.mlp.W_in"] + params["blocks.0.mlp.b_in"]
    resid = resid + torch.relu(pre) @ params["blocks.0.mlp.W_out"] + params["blocks.0.mlp.b_out"]
    return resid @ params["unembed.W_U"]


def test_forward_matches_naive_loops():
    cfg = ModelConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32)
    m = Transformer(cfg, 12, 11, 3).init_weights(0).double()
    params = {k: v.detach() for k, v in m.named_parameters()}
    tokens = torch.tensor([[3, 7, 11], [0, 10, 11]])
    fast = m(tokens)
    for b in range(2):
        torch.testing.assert_close(fast[b], naive_forward(params, tokens[b], 2), rtol=1e-12, atol=1e-12)


def test_init_is_fixed_by_seed_and_scaled_as_documented():
    cfg = ModelConfig()
    a, b, c = (Transformer(cfg, 114, 113, 3).init_weights(s) for s in (0, 0, 1))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.embed.W_E, c.embed.W_E)
    assert abs(a.blocks[0].mlp.W_in.std().item() - 1 / math.sqrt(128)) < 0.01
    assert abs(a.unembed.W_U.std().item() - 1 / math.sqrt(114)) < 0.01


def test_run_with_cache_and_hooks():
    m = canonical()
    tokens = torch.tensor([[1, 2, 113]])
    logits, cache = m.run_with_cache(tokens)
    assert cache["blocks.0.attn.hook_pattern"].shape == (1, 4, 3, 3)
    assert cache["blocks.0.mlp.hook_post"].shape == (1, 3, 512)
    assert torch.allclose(cache["blocks.0.attn.hook_pattern"].sum(-1), torch.ones(1, 4, 3))
    # zero-ablating the MLP output changes the logits; run_with_hooks leaves no hooks behind
    ablated = m.run_with_hooks(tokens, [("blocks.0.hook_mlp_out", lambda act, hook: act * 0)])
    assert not torch.allclose(ablated, logits)
    assert torch.equal(m(tokens), logits)


def test_logits_dtype_sets_the_unembeddings_precision_apart_from_the_weights():
    import pytest

    import grokscope
    from grokscope.config import ConfigError
    from grokscope.engine import select_engine

    base = grokscope.get_preset("tiny")
    task = make_task(base.task)
    tokens = task.batch("train").inputs[:64]
    ref = make_model(base, task)(tokens)
    for name, dtype in (("float64", torch.float64), ("bfloat16", torch.bfloat16)):
        cfg = base.replace(**{"model.logits_dtype": name})
        model = make_model(cfg, task)
        assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights keep theirs
        out = model(tokens)
        assert out.dtype == dtype
        if dtype == torch.float64:
            assert torch.allclose(out.float(), ref, rtol=1e-5, atol=1e-6)
        else:  # rounded to bfloat16's 8 significant bits: close, and not equal to the float32 logits
            assert torch.allclose(out.float(), ref, rtol=2e-2, atol=2e-2) and not torch.equal(out.float(), ref)
        # the fast engine computes in the weights' dtype only, so `auto` takes the generic engine
        assert select_engine(cfg, task, model).name == "generic"
    assert select_engine(base, task, make_model(base, task)).name == "fast"
    with pytest.raises(ConfigError) as err:
        base.replace(**{"model.logits_dtype": "int8"})
    assert err.value.key == "model.logits_dtype"


def test_a_run_with_bfloat16_logits_trains_and_analyses(tmp_path):
    import grokscope

    cfg = grokscope.get_preset("tiny").replace(**{"model.logits_dtype": "bfloat16", "train.epochs": 40,
                                                 "train.progress": False})
    run = grokscope.load_run(grokscope.train(cfg, tmp_path / "run"))
    assert run.metrics["train_loss"].iloc[-1] < run.metrics["train_loss"].iloc[0]
    assert "fourier" in grokscope.analyze(run).outputs
