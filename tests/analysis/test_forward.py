import pytest
import torch

from grokscope.analysis.modular.grid import _generic, grid_forward
from grokscope.config import RunConfig
from grokscope.models import make_model
from grokscope.tasks import make_task


@pytest.mark.parametrize("over", [{}, {"model.attn_bias": True, "model.unembed_bias": True, "model.act_fn": "gelu"},
                                  {"model.attn_only": True, "model.unembed_bias": True}])
def test_closed_form_matches_transformer(over):
    cfg = RunConfig().replace(**{"task.p": 13, "model.d_model": 16, "model.d_mlp": 24, "model.n_heads": 2,
                                 "model.d_head": 8, **over})
    task = make_task(cfg.task)
    model = make_model(cfg, task)
    g = torch.Generator().manual_seed(0)
    params = {k: v.detach() + 0.3 * torch.randn(v.shape, generator=g) for k, v in model.state_dict().items()}
    a, b = grid_forward(params, cfg.model, task.p), _generic(params, cfg.model, task.p)
    assert torch.allclose(a.logits, b.logits, atol=1e-4)
    assert (a.neurons is None) == (b.neurons is None) == cfg.model.attn_only
    assert a.neurons is None or torch.allclose(a.neurons, b.neurons, atol=1e-4)
    assert torch.allclose(a.pattern, b.pattern, atol=1e-5)
    # and the Transformer's own answer-position logits for one pair
    x, y = 3, 11
    model.load_state_dict(params)
    out = model(torch.tensor([[x, y, task.p]]))[0, -1]
    assert torch.allclose(a.logits[x, y], out, atol=1e-4)
