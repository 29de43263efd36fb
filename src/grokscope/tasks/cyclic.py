"""The cyclic group each modular op lives in, and the grid functions of its key frequencies.

add / sub / x2xyy2 / rand use Z_p with position a = token x. mul / div use the multiplicative
group of the non-zero residues, which is cyclic of order p - 1: with a primitive root g, x = g^a
(a discrete logarithm), so x*y = g^(a+b) and x/y = g^(a-b) are additive in a, b. `Group.tokens[a]`
is the token at group position a.

This sits with the tasks (not the analysis) because training uses it too: the excluded-loss
regulariser (grokscope.interventions) removes key frequencies from the logits as the analysis
does (grokscope.analysis.modular.measures has the definitions of the logit share r_k and of the
excluded logits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

SIGN_OF_OP = {"add": 1, "sub": -1, "mul": 1, "div": -1, "x2xyy2": 1, "rand": 1}
EXPRESSION_OF_OP = {
    "add": "x + y", "sub": "x - y", "mul": "log x + log y", "div": "log x - log y",
    "x2xyy2": "x + y (analysed as add)", "rand": "x + y (analysed as add)",
}


def primitive_root(p: int) -> int:
    """The smallest generator g of the multiplicative group mod prime p (g^a hits every non-zero residue)."""
    if p == 2:
        return 1
    phi = p - 1
    factors = [q for q in range(2, phi + 1) if phi % q == 0 and all(q % r for r in range(2, math.isqrt(q) + 1))]
    for g in range(2, p):
        if all(pow(g, phi // q, p) != 1 for q in factors):
            return g
    raise ValueError(f"no primitive root mod {p} (is p prime?)")


@dataclass(frozen=True)
class Group:
    """The cyclic group an op is analysed in.

    n: group order (p, or p - 1 for mul/div); tokens[a]: token at group position a (length n);
    sign: +1 when the answer is at position a + b, -1 when at a - b; generator: g for mul/div.
    """

    op: str
    p: int
    n: int
    tokens: np.ndarray
    sign: int
    generator: int | None

    @property
    def n_freqs(self) -> int:
        return self.n // 2

    @property
    def kind(self) -> str:
        return "Z_p" if self.generator is None else "Z_(p-1) via discrete log"

    @property
    def expression(self) -> str:
        return EXPRESSION_OF_OP.get(self.op, "x + y")

    def position_of_token(self) -> np.ndarray:
        """[p] group position of each token (-1 for token 0 under mul/div)."""
        pos = np.full(self.p, -1, dtype=np.int64)
        pos[self.tokens] = np.arange(self.n)
        return pos

    def describe(self) -> dict:
        return {"kind": self.kind, "n": self.n, "generator": self.generator, "sign": self.sign,
                "expression": self.expression, "n_freqs": self.n_freqs}


def group_for(op: str, p: int) -> Group:
    """Z_p for additive ops (and for x2xyy2 / rand, analysed as add); Z_(p-1) by discrete log for mul/div."""
    sign = SIGN_OF_OP.get(op, 1)
    if op in ("mul", "div"):
        g = primitive_root(p)
        tokens = np.array([pow(g, a, p) for a in range(p - 1)], dtype=np.int64)
        return Group(op, p, p - 1, tokens, sign, g)
    return Group(op, p, p, np.arange(p, dtype=np.int64), sign, None)


def sum_directions(group: Group, freqs: list[int] | np.ndarray) -> Tensor:
    """[2 * len(freqs) (fewer at the Nyquist frequency), n, n] unit-norm grid functions
    cos(w_k (a + s b)), sin(w_k (a + s b)) with w_k = 2 pi k / n and s = group.sign."""
    n = group.n
    a = torch.arange(n, dtype=torch.float64)
    u = a[:, None] + group.sign * a[None, :]
    out = []
    for k in freqs:
        ang = 2 * math.pi * int(k) * u / n
        for d in (torch.cos(ang), torch.sin(ang)):
            nrm = d.norm()
            if nrm > 1e-9:
                out.append(d / nrm)
    if not out:
        return torch.zeros(0, n, n, dtype=torch.float64)
    return torch.stack(out)


def directions(group: Group, freqs: list[int] | np.ndarray) -> tuple[Tensor, list[int]]:
    """`sum_directions` and the frequency of each direction (the Nyquist frequency has no sine)."""
    dirs = [sum_directions(group, [k]) for k in freqs]
    freq_of_dir = [int(k) for k, d in zip(freqs, dirs) for _ in range(d.shape[0])]
    if not dirs:
        return torch.zeros(0, group.n, group.n, dtype=torch.float64), []
    return torch.cat(dirs), freq_of_dir


def logit_shares(group: Group, Lg: Tensor) -> Tensor:
    """[..., n_freqs + 1] r_k (index 0 = 0): the share of the double-centred logit energy in the
    cos / sin(w_k (a + s b)) directions, from logits Lg [..., n, n, z] in group order (float64)."""
    L = Lg.double()
    L = L - L.mean(-1, keepdim=True)
    L = L - L.mean(dim=(-3, -2), keepdim=True)
    total = L.pow(2).sum(dim=(-3, -2, -1))
    dirs, freq_of_dir = directions(group, list(range(1, group.n_freqs + 1)))
    coef = torch.einsum("dab,...abz->...dz", dirs.to(L.device), L).pow(2).sum(-1)  # [..., d]
    out = L.new_zeros(*L.shape[:-3], group.n_freqs + 1)
    out.index_add_(-1, torch.as_tensor(freq_of_dir, device=L.device), coef)
    return torch.where(total[..., None] > 0, out / total.clamp_min(1e-300)[..., None], torch.zeros_like(out))


def excluded_logits(Lg: Tensor, dirs: Tensor) -> Tensor:
    """Lg [..., n, n, z] with its components along the unit grid functions dirs [d, n, n] removed,
    for every output z (the excluded logits of the analysis)."""
    n = Lg.shape[-2]
    L = Lg.reshape(*Lg.shape[:-3], n * n, Lg.shape[-1])
    D = dirs.reshape(-1, n * n).to(L)
    return (L - D.T @ (D @ L)).reshape(Lg.shape)
