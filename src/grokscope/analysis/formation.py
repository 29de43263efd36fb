"""When circuits form, and whether they form together more often than chance (seed 002).

Circularity. A chunk of a chunked MLP embeds token x as a point e(x) in the plane. Read as a complex
number z_x = e(x)_0 + i e(x)_1 (centred over x), the chunk is a circle ordered by frequency k when
z_x = alpha exp(2 pi i k x / p) for one complex alpha (rotation and scale). The least-squares alpha
explains the share

    circ_k = |sum_x z_x exp(-2 pi i k x / p)|^2 / (p sum_x |z_x|^2)    (k = 1..p-1)

of the points' variance: the power of the complex DFT at k. `circularity` is the best k's share
(1 on a perfect circle, ~ln(p)/p on noise: the largest of p-1 shares that sum to 1), and the
frequency is k folded into 1..(p-1)/2 with a sign for the orientation (-k: k = p - k, a reflected
circle). An ellipse splits its power between k and -k; a line puts half in each.

Formation step (`formation_step`). A chunk forms at the first checkpoint from which its circularity
stays >= `threshold` (default 0.9) at every later checkpoint with the same frequency. A chunk
that never does has no formation step. For a transformer, key frequency k forms at the first
checkpoint from which both its share of W_E's Fourier energy and its excluded-loss contribution
(the train loss with k removed from the logits, minus the train loss) stay >= half their final
values (`frequency_formation`, in the Fourier analysis's summary as `formation`).

Coincidences. The formations of one run are grouped by single linkage: consecutive formation steps
(sorted) no more than `window` apart belong to one group. A group of 2 is a pair, of 3 or more a
triple (or more). The statistic is the number of formations that came in a group of >= 2.

The null (`coincidence_test`): formations are a Poisson process in each run, so given the n
formation steps of a run and their first and last, the n - 2 others are uniform on [first, last]
(independent of the other runs). Each simulated step is rounded up to the run's next checkpoint,
as the detector sees a formation only at a checkpoint. The p-value is the share of simulations
(with one added for the observation) whose statistic, summed over runs, is at least the observed
one. A small p-value says formations come together more often than a constant-rate process in each
run's formation span would make them; a rate that changes within the span would do that too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def circle_shares(points: np.ndarray) -> np.ndarray:
    """points [..., p, 2] -> [..., p] share of the centred points' variance at each DFT index k (0 unused)."""
    z = points[..., 0] + 1j * points[..., 1]
    z = z - z.mean(-1, keepdims=True)
    power = np.abs(np.fft.fft(z, axis=-1)) ** 2
    total = (np.abs(z) ** 2).sum(-1, keepdims=True) * z.shape[-1]
    out = np.divide(power, total, out=np.zeros_like(power), where=total > 0)
    out[..., 0] = 0.0
    return out


def signed_frequency(k: np.ndarray | int, p: int) -> np.ndarray:
    """DFT index k in 1..p-1 -> the frequency in 1..(p-1)/2, negative for the reflected orientation."""
    k = np.asarray(k)
    return np.where(k <= p // 2, k, k - p)


def circularity(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """points [..., p, 2] -> (circularity [...], signed frequency [...]); frequency 0 for a single point."""
    shares = circle_shares(points)
    k = shares.argmax(-1)
    return shares.max(-1), signed_frequency(k, points.shape[-2])


def sustained_from(steps: np.ndarray, ok: np.ndarray) -> int | None:
    """The first step from which `ok` holds at every later step, or None when it fails at the last."""
    if len(ok) == 0 or not ok[-1]:
        return None
    bad = np.nonzero(~np.asarray(ok))[0]
    return int(steps[0 if len(bad) == 0 else int(bad[-1]) + 1])


def formation_step(steps: np.ndarray, circ: np.ndarray, freq: np.ndarray, threshold: float = 0.9) -> tuple[int | None, int | None]:
    """(step, signed frequency) at which one chunk's circle forms (module docstring), or (None, None).

    steps [T] increasing, circ [T], freq [T]: the chunk's circularity and frequency at each checkpoint.
    """
    step = sustained_from(steps, (circ >= threshold) & (freq == freq[-1]))
    return (None, None) if step is None else (step, int(freq[-1]))


def frequency_formation(steps: np.ndarray, embed_share: np.ndarray, contribution: np.ndarray,
                        frac: float = 0.5) -> list[int | None]:
    """Formation step of each key frequency of a transformer (columns of the [T, K] arrays): the first
    checkpoint from which both its share of W_E's Fourier energy and its excluded-loss contribution
    (excluded train loss without k minus train loss) stay >= `frac` of their final values."""
    out = []
    for j in range(embed_share.shape[1]):
        ok = (embed_share[:, j] >= frac * embed_share[-1, j]) & (contribution[:, j] >= frac * contribution[-1, j])
        out.append(sustained_from(steps, ok) if contribution[-1, j] > 0 else None)
    return out


def groups(times: np.ndarray, window: float) -> list[np.ndarray]:
    """Single-linkage groups of formation times: sorted times no more than `window` apart chain together."""
    t = np.sort(np.asarray(times, dtype=float))
    if len(t) == 0:
        return []
    cuts = np.nonzero(np.diff(t) > window)[0] + 1
    return np.split(t, cuts)


def group_counts(times: np.ndarray, window: float) -> dict[str, int]:
    """{"formations", "single", "pairs", "triples" (groups of >= 3), "in_groups" (formations in a group of >= 2)}."""
    sizes = np.array([len(g) for g in groups(times, window)], dtype=int)
    return {"formations": int(sizes.sum()), "single": int((sizes == 1).sum()), "pairs": int((sizes == 2).sum()),
            "triples": int((sizes >= 3).sum()), "in_groups": int(sizes[sizes >= 2].sum())}


def _in_groups(t: np.ndarray, window: float) -> np.ndarray:
    """[sims, n] sorted times -> [sims] formations that share a group with a neighbour (vectorised `group_counts`)."""
    close = np.diff(t, axis=-1) <= window  # [sims, n-1]: neighbours i, i+1 linked
    linked = np.zeros(t.shape, dtype=bool)
    linked[:, 1:] |= close
    linked[:, :-1] |= close
    return linked.sum(-1)


@dataclass
class CoincidenceTest:
    """The observed grouping of formations against the Poisson null (module docstring)."""

    window: float
    observed: dict[str, int]  # group_counts summed over runs
    share_in_groups: float  # observed["in_groups"] / formations
    null_mean_in_groups: float  # the statistic's mean under the null
    null_share_in_groups: float
    p_value: float  # P(null statistic >= observed)
    n_runs: int  # runs with >= 2 formations (the others carry no information)
    n_sims: int
    per_run: list[dict] = field(default_factory=list)
    null_distribution: dict[int, int] = field(default_factory=dict)  # statistic value -> simulations with it

    def verdict(self, alpha: float = 0.05) -> str:
        if self.n_runs == 0:
            return "no run has two formations to compare"
        if self.p_value < alpha:
            return f"formations come together more often than a Poisson process makes them (p = {self.p_value:.3g} < {alpha})"
        return f"consistent with formations one at a time as a Poisson process (p = {self.p_value:.3g} >= {alpha})"

    def to_dict(self) -> dict:
        return {"window": self.window, "observed": self.observed, "share_in_groups": self.share_in_groups,
                "null_mean_in_groups": self.null_mean_in_groups, "null_share_in_groups": self.null_share_in_groups,
                "p_value": self.p_value, "n_runs": self.n_runs, "n_sims": self.n_sims, "verdict": self.verdict(),
                "per_run": self.per_run, "null_distribution": {str(k): v for k, v in self.null_distribution.items()}}


def coincidence_test(runs: list[np.ndarray], window: float, checkpoints: list[np.ndarray] | None = None,
                     n_sims: int = 10000, seed: int = 0) -> CoincidenceTest:
    """Test the formation steps of several runs (one array each) against the Poisson null.

    checkpoints: each run's checkpoint steps, to which simulated formations are rounded up (None:
    continuous times, for formation times that are not on a grid).
    """
    if window < 0:
        raise ValueError(f"window must be >= 0 (got {window})")
    gen = np.random.default_rng(seed)
    observed = {"formations": 0, "single": 0, "pairs": 0, "triples": 0, "in_groups": 0}
    null = np.zeros(n_sims)
    per_run, n_runs = [], 0
    for i, times in enumerate(runs):
        t = np.sort(np.asarray(times, dtype=float))
        counts = group_counts(t, window)
        per_run.append({"run": i, **counts, "steps": [int(x) if float(x).is_integer() else float(x) for x in t]})
        for key in observed:
            observed[key] += counts[key]
        if len(t) < 2:
            continue
        n_runs += 1
        lo, hi = t[0], t[-1]
        sim = np.sort(np.concatenate([np.full((n_sims, 1), lo), np.full((n_sims, 1), hi),
                                      gen.uniform(lo, hi, size=(n_sims, len(t) - 2))], axis=1), axis=1)
        if checkpoints is not None:
            grid = np.sort(np.asarray(checkpoints[i], dtype=float))
            sim = grid[np.clip(np.searchsorted(grid, sim, side="left"), 0, len(grid) - 1)]
        null += _in_groups(sim, window)
    n = max(observed["formations"], 1)
    p = (1 + int((null >= observed["in_groups"]).sum())) / (n_sims + 1)
    values, counts = np.unique(null.astype(np.int64), return_counts=True)
    return CoincidenceTest(window, observed, observed["in_groups"] / n, float(null.mean()), float(null.mean()) / n,
                           p if n_runs else 1.0, n_runs, n_sims, per_run,
                           {int(v): int(c) for v, c in zip(values, counts)})
