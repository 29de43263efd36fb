"""ModularFastEngine = the plain model at the answer position: forward, gradients and 50 AdamW steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from grokscope.config import ModelConfig, ModularConfig
from grokscope.engine.modular_fast import ModularFastEngine
from grokscope.engine.generic import GenericEngine
from grokscope.models.transformer import make_transformer
from grokscope.tasks.modular import ModularTask

SMALL = dict(d_model=32, n_heads=2, d_head=8, d_mlp=48)
VARIANTS = {
    "relu": {},
    "gelu": {"act_fn": "gelu"},
    "attn_only": {"attn_only": True},
    "biases": {"attn_bias": True, "unembed_bias": True},
    "gelu_biases_attn_only": {"act_fn": "gelu", "attn_bias": True, "unembed_bias": True, "attn_only": True},
}
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny ops on a shared 2-core machine: one thread avoids OpenMP barrier stalls (10x faster here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def setup(variant: str, dtype: torch.dtype, members: int = 3, p: int = 23, seed: int = 0):
    cfg = ModelConfig(**SMALL, **VARIANTS[variant])
    task = ModularTask.from_config(ModularConfig(p=p, frac_train=0.3))
    model = make_transformer(cfg, task.d_vocab, task.d_vocab_out, task.n_ctx, seed).to(dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    params = {}
    for name, value in model.named_parameters():  # members differ; biases are random so they matter
        noise = torch.randn((members, *value.shape), generator=gen, dtype=torch.float64).to(dtype)
        base = value.detach() if not name.rsplit(".", 1)[-1].startswith("b_") else 0.3 * noise[0]
        spread = 0.2 * torch.arange(members, dtype=dtype).view(-1, *[1] * value.dim())  # member i: base + 0.2 i noise
        params[name] = (base + spread * noise).requires_grad_()
    return cfg, task, model, params


def rel_close(got: torch.Tensor, want: torch.Tensor, tol: float, scale: float | None = None) -> bool:
    """|got - want| <= tol * max(|want|, scale) in the max norm (scale guards all-but-zero tensors)."""
    ref = max(want.abs().max().item(), scale or 0.0)
    return (got - want).abs().max().item() <= tol * ref


def grads(logits: torch.Tensor, params: dict, weight: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad((logits * weight).sum(), list(params.values())))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_and_gradients_match_plain_model(variant: str, dtype: torch.dtype) -> None:
    cfg, task, model, params = setup(variant, dtype)
    m = params["embed.W_E"].shape[0]
    grid = torch.randperm(task.p**2, generator=torch.Generator().manual_seed(5))[: 3 * 40].view(m, 40)
    tokens = torch.stack([task.tokens(g) for g in grid])  # [member batch 3], different examples per member
    fast = ModularFastEngine(cfg, task).logits(params, tokens)
    generic = GenericEngine(cfg, task, model).logits(params, tokens)
    assert fast.shape == (m, 40, 1, task.d_vocab_out) and fast.dtype == dtype
    tol = TOL[dtype]
    assert rel_close(fast, generic, tol)
    for i in range(m):  # the plain nn.Module, member by member
        plain = functional_call(model, {k: v[i] for k, v in params.items()}, (tokens[i],))[:, -1:]
        assert rel_close(fast[i], plain, tol)
    weight = torch.randn(fast.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(dtype)
    g_fast, g_gen = grads(fast, params, weight), grads(generic, params, weight)
    scale = max(g.abs().max().item() for g in g_gen)
    for name, a, b in zip(params, g_fast, g_gen):
        if name.endswith("b_K"):  # softmax ignores a shift shared by all keys: 0 up to rounding in both
            assert max(a.abs().max().item(), b.abs().max().item()) <= 10 * tol * scale
        else:
            assert rel_close(a, b, 10 * tol, scale=1e-3 * scale), name


def test_shared_tokens_and_no_grad() -> None:
    cfg, task, model, params = setup("relu", torch.float64, members=2)
    eng = ModularFastEngine(cfg, task)
    tokens = task.tokens(task.test_idx)[None]  # member 1: shared by both members
    with torch.no_grad():
        out = eng.logits(params, tokens)
        want = GenericEngine(cfg, task, model).logits(params, tokens.expand(2, -1, -1))
    assert not out.requires_grad and rel_close(out, want, 1e-12)


def test_layout_is_cached_per_tokens_tensor_and_rebuilt_after_a_write() -> None:
    cfg, task, model, params = setup("relu", torch.float64, members=1)
    eng = ModularFastEngine(cfg, task)
    tokens = task.tokens(task.train_idx)[None].clone()
    first = eng.logits(params, tokens)
    assert len(eng._layouts) == 1
    eng.logits(params, tokens)
    assert len(eng._layouts) == 1  # same tensor: reused
    tokens[0, :, :2] = tokens[0, :, :2].flip(-1)  # in place: (x, y) -> (y, x), version bumps
    swapped = eng.logits(params, tokens)
    want = GenericEngine(cfg, task, model).logits(params, tokens)
    assert rel_close(swapped, want, 1e-12) and not torch.allclose(swapped, first)


@pytest.mark.parametrize(
    "bad", ["eq", "range", "shape"],
)
def test_bad_tokens_are_refused(bad: str) -> None:
    cfg, task, model, params = setup("relu", torch.float32, members=2)
    tokens = task.tokens(task.train_idx[:8])[None].clone()
    if bad == "eq":
        tokens[0, 3, 2] = 0
    elif bad == "range":
        tokens[0, 3, 0] = task.d_vocab
    else:
        tokens = tokens.expand(3, -1, -1)
    with pytest.raises(ValueError):
        ModularFastEngine(cfg, task).logits(params, tokens)


def test_unsupported_configs_are_refused() -> None:
    task = ModularTask.from_config(ModularConfig(p=23))
    with pytest.raises(ValueError):
        ModularFastEngine(ModelConfig(**SMALL, n_layers=2), task)
    with pytest.raises(ValueError):
        ModularFastEngine(ModelConfig(**SMALL, normalization="LN"), task)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_fifty_adamw_steps_match_plain_training(dtype: torch.dtype) -> None:
    """Same init, same data, same torch AdamW: the losses of fast and plain agree step by step."""
    cfg = ModelConfig(**SMALL)
    task = ModularTask.from_config(ModularConfig(p=29, frac_train=0.3))
    model = make_transformer(cfg, task.d_vocab, task.d_vocab_out, task.n_ctx, 0).to(dtype)
    params = {k: v.detach()[None].clone().requires_grad_() for k, v in model.named_parameters()}
    eng = ModularFastEngine(cfg, task)
    tr_tok, tr_lab = task.tokens(task.train_idx), task.labels(task.train_idx)
    te_tok, te_lab = task.tokens(task.test_idx), task.labels(task.test_idx)
    tr_tok_m, te_tok_m = tr_tok[None], te_tok[None]
    hyper = dict(lr=3e-3, weight_decay=1.0, betas=(0.9, 0.98))
    opt_plain = torch.optim.AdamW(model.parameters(), **hyper)
    opt_fast = torch.optim.AdamW(list(params.values()), **hyper)

    def ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # float64 CE, as the trainer
        return F.cross_entropy(logits.to(torch.float64), labels)

    worst, first = 0.0, None
    for _ in range(50):
        loss_p = ce(model(tr_tok)[:, -1], tr_lab)
        first = loss_p.item() if first is None else first
        opt_plain.zero_grad()
        loss_p.backward()
        opt_plain.step()
        loss_f = ce(eng.answer_logits(params, tr_tok_m)[0], tr_lab)
        opt_fast.zero_grad()
        loss_f.backward()
        opt_fast.step()
        with torch.no_grad():
            test_p = ce(model(te_tok)[:, -1], te_lab)
            test_f = ce(eng.answer_logits(params, te_tok_m)[0], te_lab)
        for a, b in ((loss_f, loss_p), (test_f, test_p)):
            worst = max(worst, abs(a.item() - b.item()) / abs(b.item()))
    assert loss_p.item() < 0.9 * first  # it trained
    assert worst <= TOL[dtype], worst


def test_table_rows_are_padded_with_exact_zeros() -> None:
    """With an MLP the table is [W_in | W_U] padded to a multiple of 16 columns, the pad exactly 0."""
    from grokscope.engine.modular_fast import _FastLogits

    cfg, task, _, params = setup("relu", torch.float64)
    eng = ModularFastEngine(cfg, task)
    tokens = task.tokens(task.train_idx[:40])[None]
    layout = eng._layout(tokens, 3, cfg.n_heads)
    with torch.no_grad():
        _, saved = eng._forward(params, layout, keep=True)
    table = saved.table  # d_mlp 48 + d_vocab_out 23 = 71 columns -> 80
    assert table.shape == (layout.n_table, 80) and table[:, 71:].abs().max() == 0 and table[:, :71].abs().min() > 0
    assert saved.out.shape == (3 * 40, 80) and saved.out[:, 71:].abs().max() == 0
    assert isinstance(eng.answer_logits(params, tokens).grad_fn, _FastLogits._backward_cls)
