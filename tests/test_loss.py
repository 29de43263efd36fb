"""The fused cross-entropy against the plain cast + log_softmax + gather formulation."""

import pytest
import torch

from grokscope.loss import masked_cross_entropy


def reference(logits, labels, mask, dtype):
    logp = logits.to(dtype).log_softmax(-1)
    ce = -logp.gather(-1, labels[..., None])[..., 0]
    w = mask.to(dtype)
    return (ce * w).sum(-1) / w.sum(-1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_value_and_gradient_match_autograd(dtype):
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 50, 17, generator=gen) * 8).requires_grad_()  # confident and unconfident rows
    labels = torch.randint(0, 17, (3, 50), generator=gen)
    mask = torch.rand(3, 50, generator=gen) > 0.3
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=dtype)

    got = masked_cross_entropy(logits, labels, mask, dtype)
    (g_got,) = torch.autograd.grad((got * weights).sum(), logits)
    want = reference(logits, labels, mask, dtype)
    (g_want,) = torch.autograd.grad((want * weights).sum(), logits)

    assert got.dtype == dtype and g_got.dtype == logits.dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    torch.testing.assert_close(g_got, g_want, rtol=tol, atol=1e-7)
    assert (g_got[~mask] == 0).all()  # padding examples get no gradient
    with torch.no_grad():  # the evaluation path keeps no softmax and gives the same value
        assert torch.equal(masked_cross_entropy(logits, labels, mask, dtype), got.detach())


def test_float64_matches_torch_cross_entropy():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 40, 113, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 113, (1, 40), generator=gen)
    got = masked_cross_entropy(logits, labels, torch.ones(1, 40, dtype=torch.bool))
    want = torch.nn.functional.cross_entropy(logits[0], labels[0])
    assert abs(got.item() - want.item()) < 1e-14
