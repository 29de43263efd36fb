import math

import numpy as np
import pytest
import torch

from grokscope.analysis.modular.fourier import (
    block_energy,
    block_energy_fft,
    fourier_1d,
    fourier_2d,
    fourier_basis,
    freq_norms_1d,
    gini,
    group_for,
    neuron_single_frequency_share,
    primitive_root,
    row_frequencies,
    single_frequency_share,
    sum_directions,
)


@pytest.mark.parametrize("n", [5, 6, 22, 23, 113])
def test_basis_orthonormal(n):
    B = fourier_basis(n)
    assert torch.allclose(B @ B.T, torch.eye(n, dtype=torch.float64), atol=1e-12)
    assert row_frequencies(n).max() == n // 2


def test_basis_rows_are_the_explicit_cos_sin():
    n = 7
    B = fourier_basis(n)
    a = np.arange(n)
    assert np.allclose(B[3].numpy(), math.sqrt(2 / n) * np.cos(2 * math.pi * 2 * a / n))
    assert np.allclose(B[4].numpy(), math.sqrt(2 / n) * np.sin(2 * math.pi * 2 * a / n))


@pytest.mark.parametrize("n", [3, 4, 22, 23])
def test_fft_matches_explicit_basis(n):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(3, n, n, dtype=torch.float64, generator=g)
    B = fourier_basis(n)
    assert torch.allclose(fourier_1d(x, -1), x @ B.T, atol=1e-10)
    assert torch.allclose(fourier_1d(x, 1), torch.einsum("rb,cbd->crd", B, x), atol=1e-10)
    assert torch.allclose(fourier_2d(x), B @ x @ B.T, atol=1e-10)
    assert torch.allclose(block_energy_fft(x), block_energy(x), atol=1e-9)


@pytest.mark.parametrize("n", [22, 23])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_neuron_share_fast_matches_full(n, dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.relu(torch.randn(n, n, 17, dtype=torch.float64, generator=g))
    x[..., 0] = 0.0  # a dead neuron -> all zeros
    fast = neuron_single_frequency_share(x.to(dtype))
    full = single_frequency_share(x.permute(2, 0, 1))
    assert torch.allclose(fast, full, atol=1e-9 if dtype == torch.float64 else 1e-5)
    assert torch.all(fast[0] == 0)
    assert torch.allclose(full[1:].sum(-1), torch.ones(16, dtype=torch.float64))


def test_share_of_planted_products():
    n, k = 23, 4
    a = torch.arange(n, dtype=torch.float64)
    w = 2 * math.pi * k / n
    x = torch.stack([
        torch.cos(w * a)[:, None] * torch.sin(w * a)[None, :],  # pure (k, k) term
        torch.cos(w * a)[:, None] + 0 * a[None, :] + 5.0,  # x-only term plus a constant
        torch.cos(w * a)[:, None] * torch.cos(2 * w * a)[None, :],  # cross-frequency term
    ], -1)
    share = neuron_single_frequency_share(x)
    assert share[0, k] == pytest.approx(1.0) and share[1, k] == pytest.approx(1.0)
    assert share[2, 1:].max() < 1e-9 and share[2, 0] == pytest.approx(1.0)


def test_gini_known_values():
    assert gini([1, 1, 1, 1]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 5]) == pytest.approx(0.75)  # (m - 1) / m
    assert gini([1, 2, 3, 4]) == pytest.approx(0.25)  # sum (2i - 5) x_i / (4 * 10) = 10 / 40
    assert gini([0, 0]) == 0.0


def test_freq_norms_parseval():
    x = torch.randn(23, 8, dtype=torch.float64)
    norms = freq_norms_1d(x, 0)
    assert norms.shape == (12,)
    assert float(norms.pow(2).sum()) == pytest.approx(float(x.pow(2).sum()))


@pytest.mark.parametrize("p", [5, 7, 23, 29, 113])
def test_discrete_log_group(p):
    g = primitive_root(p)
    grp = group_for("mul", p)
    assert grp.n == p - 1 and grp.generator == g
    assert sorted(grp.tokens.tolist()) == list(range(1, p))  # g^a hits every non-zero residue once
    pos = grp.position_of_token()
    for x in range(1, p):
        for y in (1, 2, p - 1):
            # multiplication becomes addition of positions mod p - 1
            assert pos[(x * y) % p] == (pos[x] + pos[y]) % (p - 1)
            assert pos[(x * pow(y, p - 2, p)) % p] == (pos[x] - pos[y]) % (p - 1)
    assert group_for("div", p).sign == -1 and group_for("sub", p).sign == -1
    assert group_for("add", p).n == p


def test_sum_directions_unit_and_orthogonal():
    grp = group_for("add", 22)
    D = sum_directions(grp, [1, 5, 11]).reshape(-1, 22 * 22)
    assert D.shape[0] == 5  # no sine at the Nyquist frequency 11
    assert torch.allclose(D @ D.T, torch.eye(5, dtype=torch.float64), atol=1e-12)


def test_cross_entropy_matches_float64_reference():
    from grokscope.analysis.modular.measures import cross_entropy

    g = torch.Generator().manual_seed(0)
    for scale in (0.1, 10.0, 200.0):
        L = torch.randn(500, 23, generator=g) * scale
        y = torch.randint(0, 23, (500,), generator=g)
        ref = -L.double().log_softmax(-1).gather(-1, y[:, None]).mean()
        assert cross_entropy(L, y) == pytest.approx(float(ref), rel=1e-5)
    # a confident model: the loss ~1e-9 survives (float32 log_softmax gives 0)
    L = torch.zeros(4, 5)
    L[:, 0] = 21.0
    y = torch.zeros(4, dtype=torch.long)
    ref = float(-L.double().log_softmax(-1)[:, 0].mean())
    assert ref > 0 and cross_entropy(L, y) == pytest.approx(ref, rel=1e-5)


def test_accuracy_is_argmax_including_exact_ties():
    from grokscope.analysis.modular.measures import loss_and_accuracy

    g = torch.Generator().manual_seed(1)
    L = torch.randint(-2, 3, (400, 7), generator=g).float()  # small integers: many exact ties
    L[:20] = 0.0  # all classes tied: argmax takes class 0
    y = torch.randint(0, 7, (400,), generator=g)
    y[:10] = 0
    want = float((L.argmax(-1) == y).double().mean())
    loss, acc = loss_and_accuracy(L, y)
    assert acc == want
    assert loss == pytest.approx(float(-L.double().log_softmax(-1).gather(-1, y[:, None]).mean()), rel=1e-6)
    assert all(math.isnan(v) for v in loss_and_accuracy(L[:0], y[:0]))
