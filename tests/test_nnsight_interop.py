"""nnsight traces a grokscope model as it is (issue 16): the activations it saves are the ones
run_with_cache returns, and an edit made through it is the edit run_with_hooks makes. Runs where
nnsight is installed (`pip install 'grokscope[nnsight]'`); skipped otherwise."""

from __future__ import annotations

import pytest
import torch

import grokscope
from grokscope.models import make_model
from grokscope.tasks import make_task

nnsight = pytest.importorskip("nnsight")


@pytest.fixture(scope="module")
def model_and_tokens():
    cfg = grokscope.get_preset("tiny").replace(**{"model.n_layers": 2})
    task = make_task(cfg.task)
    model = make_model(cfg, task).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, task.tokens(task.test_idx[:32])


def test_traced_activations_are_the_cached_ones(model_and_tokens):
    model, tokens = model_and_tokens
    traced = nnsight.NNsight(model)
    with traced.trace(tokens):  # nnsight >= 0.5 asks for modules in the order the forward runs them
        post = traced.blocks[0].mlp.hook_post.output.save()
        pattern = traced.blocks[1].attn.hook_pattern.output.save()
        logits = traced.output.save()
    ref_logits, cache = model.run_with_cache(tokens)
    assert torch.equal(pattern, cache["blocks.1.attn.hook_pattern"])
    assert torch.equal(post, cache["blocks.0.mlp.hook_post"])
    assert torch.equal(logits, ref_logits)


def test_an_edit_through_nnsight_is_the_hook_edit(model_and_tokens):
    model, tokens = model_and_tokens
    traced = nnsight.NNsight(model)
    with traced.trace(tokens):
        traced.blocks[0].mlp.hook_post.output[:, :, :10] = 0  # ablate ten neurons
        edited = traced.output.save()

    def ablate(act, hook):
        act = act.clone()
        act[:, :, :10] = 0
        return act

    expected = model.run_with_hooks(tokens, [("blocks.0.mlp.hook_post", ablate)])
    assert torch.equal(edited, expected)
    assert not torch.equal(edited, model(tokens))  # the edit changed something
