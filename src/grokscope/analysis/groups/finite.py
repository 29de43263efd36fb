"""A finite group as a multiplication table, its real irreducible representations, and the
orthonormal basis of functions on the group that they induce (the group's "Fourier basis").

Functions f on G decompose under left translation into isotypic components, one per irreducible
representation rho (the span of rho's matrix coefficients, dimension d_rho^2), and the projector
onto rho's component needs only rho's character (Serre, Linear Representations of Finite Groups,
2.6):

    (P_rho f)(g) = d_rho / |G| * sum_h chi_rho(g h^-1) f(h)

Characters come from code, not tables: S_n's from the Murnaghan-Nakayama rule on beta-sets
(`sn_character`), Z_n's are exp(2 pi i k g / n). A complex character and its conjugate together
form one real irreducible (Z_n's frequency k: cos and sin), whose real character is 2 Re chi; every
irreducible of S_n is real. `FiniteGroup.basis` stacks an orthonormal basis of each component,
which for Z_n is the real Fourier basis (up to a rotation inside each frequency), so every measure
defined on it agrees with the modular Fourier analysis for the cyclic group.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Irrep:
    """A real irreducible representation: its name, complex dimension, the size of its isotypic
    component (d^2, or 2 d^2 for a complex pair), and its real character on every element."""

    name: str
    dim: int
    size: int
    character: np.ndarray = field(repr=False)  # [|G|] float64
    label: str = ""  # a longer description ("standard", "sign", "frequency 5")


@dataclass
class FiniteGroup:
    """Elements 0..n-1 (0 = identity), `table[g, h]` = g h, and the real irreducibles."""

    name: str
    table: np.ndarray  # [n, n] int64
    irreps: list[Irrep]

    def __post_init__(self) -> None:
        n = len(self.table)
        self.order = n
        self.inverse = np.argmin(self.table, axis=1)  # g h = e = 0
        if not (self.table[np.arange(n), self.inverse] == 0).all():
            raise ValueError(f"{self.name}: element 0 is not the identity of the table")
        if sum(r.size for r in self.irreps) != n:
            raise ValueError(f"{self.name}: the irreducibles' components add up to {sum(r.size for r in self.irreps)}, not {n}")

    def projector(self, irrep: Irrep) -> np.ndarray:
        """[n, n] P with (P f)(g) = sum_h P[g, h] f(h): d / |G| * chi(g h^-1)."""
        gh_inv = self.table[:, self.inverse]  # [g, h] -> g h^-1
        scale = irrep.dim / self.order
        return scale * irrep.character[gh_inv]

    @functools.cached_property
    def basis(self) -> tuple[np.ndarray, np.ndarray]:
        """(Q [n, n] orthonormal columns, owner [n] irrep index per column): Q[:, owner == i] spans
        irrep i's isotypic component. Checked: each projector has exactly `size` unit eigenvalues."""
        cols, owner = [], []
        for i, irrep in enumerate(self.irreps):
            vals, vecs = np.linalg.eigh(self.projector(irrep))
            keep = vals > 0.5
            if int(keep.sum()) != irrep.size or not np.allclose(vals[keep], 1.0, atol=1e-8):
                raise ValueError(f"{self.name}: the projector of {irrep.name} is not a rank-{irrep.size} projection")
            cols.append(vecs[:, keep])
            owner += [i] * irrep.size
        q = np.concatenate(cols, axis=1)
        return q, np.asarray(owner)

    def names(self) -> list[str]:
        return [r.name for r in self.irreps]


# --- Z_n ------------------------------------------------------------------------------------------

def cyclic_group(n: int) -> FiniteGroup:
    """Z_n under addition; real irreducibles = frequencies k = 0 .. n // 2 (named "k")."""
    g = np.arange(n)
    table = (g[:, None] + g[None, :]) % n
    irreps = []
    for k in range(n // 2 + 1):
        pair = 0 < k < n / 2  # exp(i w g) and exp(-i w g): one real irreducible of size 2
        chi = (2.0 if pair else 1.0) * np.cos(2 * math.pi * k * g / n)
        irreps.append(Irrep(str(k), 1, 2 if pair else 1, chi, "constant" if k == 0 else f"frequency {k}"))
    return FiniteGroup(f"Z_{n}", table, irreps)


# --- S_n ------------------------------------------------------------------------------------------

def partitions(n: int, largest: int | None = None) -> list[tuple[int, ...]]:
    """The partitions of n, largest part first, in reverse lexicographic order: (n), (n-1, 1), ..."""
    largest = n if largest is None else largest
    if n == 0:
        return [()]
    return [(first, *rest) for first in range(min(n, largest), 0, -1) for rest in partitions(n - first, first)]


@functools.lru_cache(maxsize=None)
def _mn(beta: tuple[int, ...], mu: tuple[int, ...]) -> int:
    """chi^lambda(mu) by Murnaghan-Nakayama on the beta-set of lambda: removing a rim hook of length r
    moves a bead from b to b - r (onto a free place), with sign (-1)^(beads strictly between)."""
    if not mu:
        return 1
    r, rest = mu[0], mu[1:]
    beads = set(beta)
    total = 0
    for b in beta:
        if b - r >= 0 and b - r not in beads:
            between = sum(1 for c in beta if b - r < c < b)
            moved = tuple(sorted((beads - {b}) | {b - r}))
            total += (-1) ** between * _mn(moved, rest)
    return total


def sn_character(lam: tuple[int, ...], mu: tuple[int, ...]) -> int:
    """The character of S_n's irreducible `lam` (a partition of n) on the class of cycle type `mu`."""
    k = len(lam)
    beta = tuple(sorted(part + (k - 1 - i) for i, part in enumerate(lam)))
    return _mn(beta, tuple(sorted(mu, reverse=True)))


def cycle_type(perm: np.ndarray) -> tuple[int, ...]:
    """Cycle lengths of a permutation in one-line notation, longest first."""
    seen, lengths = np.zeros(len(perm), dtype=bool), []
    for start in range(len(perm)):
        length, i = 0, start
        while not seen[i]:
            seen[i], i, length = True, int(perm[i]), length + 1
        if length:
            lengths.append(length)
    return tuple(sorted(lengths, reverse=True))


def _sn_label(lam: tuple[int, ...], n: int) -> str:
    # for n = 3 the standard irreducible is its own sign twist: the later key wins
    names = {(n,): "trivial", (1,) * n: "sign", (2,) + (1,) * (n - 2): "sign x standard", (n - 1, 1): "standard"}
    return names.get(lam, "") if n > 2 else {(2,): "trivial", (1, 1): "sign"}.get(lam, "")


def symmetric_group(perms: np.ndarray, table: np.ndarray) -> FiniteGroup:
    """S_n from its elements (one-line notation, row 0 the identity) and multiplication table; one
    irreducible per partition of n, named like "(4,1)"."""
    n = perms.shape[1]
    types = [cycle_type(p) for p in perms]
    irreps = []
    for lam in partitions(n):
        chi = np.array([sn_character(lam, t) for t in types], dtype=np.float64)
        d = int(chi[0])
        irreps.append(Irrep("(" + ",".join(map(str, lam)) + ")", d, d * d, chi, _sn_label(lam, n)))
    return FiniteGroup(f"S_{n}", table, irreps)
