"""TransformerLens interop (issue 16): a grokscope checkpoint as a HookedTransformer gives the same
logits and activations, and a HookedTransformer's weights load back. Runs where transformer_lens
2.x/3.x is installed (`pip install 'grokscope[tl]'`); skipped otherwise, with the reason."""

from __future__ import annotations

import pytest
import torch

import grokscope
from grokscope.models import make_model
from grokscope.tasks import make_task

tl = pytest.importorskip("transformer_lens")
try:
    tl.HookedTransformer
except ImportError as err:  # TransformerLens 4 removed it
    pytest.skip(str(err).splitlines()[0], allow_module_level=True)

from grokscope.models.transformer import Transformer  # noqa: E402
from grokscope.models.tl_interop import to_hooked_transformer  # noqa: E402


def _model(**model):
    cfg = grokscope.get_preset("tiny").replace(**{f"model.{k}": v for k, v in model.items()})
    task = make_task(cfg.task)
    m = make_model(cfg, task)
    with torch.no_grad():  # every parameter non-zero, biases included, so a dropped one would show
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m, task.tokens(task.test_idx[:64])


@pytest.mark.parametrize("model", [{}, {"normalization": "LN", "act_fn": "gelu", "attn_bias": True, "unembed_bias": True},
                                   {"attn_only": True, "n_layers": 2}], ids=["canonical", "ln-gelu-biases", "attn-only-2L"])
def test_the_same_logits_and_activations_both_ways(model):
    ours, tokens = _model(**model)
    ht = to_hooked_transformer(ours)
    torch.testing.assert_close(ht(tokens, return_type="logits"), ours(tokens), rtol=1e-5, atol=1e-5)
    _, their_cache = ht.run_with_cache(tokens)
    _, our_cache = ours.run_with_cache(tokens)
    for name in ("blocks.0.attn.hook_pattern", "blocks.0.hook_resid_post"):
        torch.testing.assert_close(their_cache[name], our_cache[name], rtol=1e-5, atol=1e-5)
    back = Transformer.from_hooked_transformer(ht)
    unused = {"d_mlp"} if ours.cfg.attn_only else set()  # an attention-only model has no MLP width
    assert {k: v for k, v in vars(back.cfg).items() if k not in unused} == {k: v for k, v in vars(ours.cfg).items() if k not in unused}
    for (k, a), (_, b) in zip(back.state_dict().items(), ours.state_dict().items()):
        assert torch.equal(a, b), k


def test_a_checkpoint_converts_through_the_method(tmp_path):
    run = grokscope.load_run(grokscope.train(grokscope.get_preset("tiny").replace(**{"train.epochs": 20}), tmp_path / "r"))
    model = run.checkpoint(run.steps[-1])
    tokens = run.task.tokens(run.task.test_idx[:16])
    torch.testing.assert_close(model.to_hooked_transformer()(tokens), model(tokens), rtol=1e-5, atol=1e-5)
