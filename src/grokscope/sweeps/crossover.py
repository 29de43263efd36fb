"""The crossover search: the training-set size below which a run memorises and never generalises
(within its budget) and above which it generalises; grokking lies just above it (seed 004: its
authors found each task's crossover by hand).

Each trial is an ordinary run directory, OUT/<field>=<value>, trained with the base config and
`train.stop_at_test_acc = target`, so a trial that generalises stops there and one that does not
costs the whole budget (`train.epochs`, or `steps` optimizer steps whatever the size: with minibatches
a bigger training set has more steps per epoch). The search evaluates `lo` and `hi`, then bisects
geometrically (sizes span scales) while hi / lo > 1 + rel_tol (integers: while they differ by more
than 1) and trials remain, assuming that generalising is monotone in the data size. OUT/crossover.json
(written atomically after every trial) holds the trials and the result; running the same search
again reuses the finished trials and resumes a killed one.

    from grokscope.sweeps.crossover import crossover
    result = crossover(get_preset("quick"), "runs/xover", "task.frac_train", 0.2, 0.8)
    result["crossover"]      # {"below": largest size that did not generalise, "above": smallest that did}
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from grokscope.analysis.phases import first_step_at_least
from grokscope.config import ConfigError, RunConfig
from grokscope.io import RunDirError, atomic_write_json, read_json
from grokscope.run import load_run
from grokscope.sweeps.index import outcome
from grokscope.sweeps.runner import trial_status
from grokscope.trainer import train

log = logging.getLogger(__name__)

FORMAT = "grokscope.crossover.v1"
FIELDS = {"task.n_train": int, "task.frac_train": float}


@dataclass(frozen=True)
class Search:
    """What the search varies and how long it goes on."""

    field: str  # one of FIELDS
    lo: float  # a size expected not to generalise
    hi: float  # a size expected to generalise
    max_trials: int = 8  # the compute budget: at most this many runs of train.epochs each
    rel_tol: float = 0.1  # stop once hi / lo <= 1 + rel_tol
    target: float = 0.99  # test accuracy that counts as generalising
    steps: int | None = None  # each trial's budget in optimizer steps, whatever its size (None: train.epochs)

    def check(self, cfg: RunConfig) -> None:
        if self.field not in FIELDS:
            raise ConfigError("--field", f"must be one of {', '.join(FIELDS)} (got {self.field!r})")
        if self.field == "task.n_train" and not hasattr(cfg.task, "n_train"):
            raise ConfigError("--field", f"task {cfg.task.name!r} has no n_train; use task.frac_train")
        if self.field == "task.frac_train" and not hasattr(cfg.task, "frac_train"):
            raise ConfigError("--field", f"task {cfg.task.name!r} has no frac_train; use task.n_train")
        if not (0 < self.lo < self.hi):
            raise ConfigError("--lo/--hi", f"need 0 < lo < hi (got {self.lo}, {self.hi})")
        if FIELDS[self.field] is int and (self.lo != int(self.lo) or self.hi != int(self.hi)):
            raise ConfigError("--lo/--hi", f"{self.field} takes integers (got {self.lo}, {self.hi})")
        if self.max_trials < 2:
            raise ConfigError("--max-trials", f"must be >= 2: lo and hi come first (got {self.max_trials})")
        if not self.rel_tol > 0:
            raise ConfigError("--rel-tol", f"must be > 0 (got {self.rel_tol})")
        if not 0 < self.target <= 1:
            raise ConfigError("--target", f"must be in (0, 1] (got {self.target})")
        if self.steps is not None and self.steps < 1:
            raise ConfigError("--steps", f"must be an integer >= 1 (got {self.steps})")
        for v in (self.lo, self.hi):  # both ends make valid configs (the task checks its own sizes)
            self.config(cfg, self.value(v))

    def value(self, v: float) -> float | int:
        return int(round(v)) if FIELDS[self.field] is int else float(v)

    def config(self, cfg: RunConfig, value: float | int) -> RunConfig:
        out = cfg.replace(**{self.field: value, "train.stop_at_test_acc": self.target})
        if self.steps is not None:  # with minibatches a bigger training set has more steps per epoch
            per_epoch = out.replace(**{"train.epochs": 1}).total_steps()
            out = out.replace(**{"train.epochs": -(-self.steps // per_epoch)})
        return out

    def midpoint(self, lo: float, hi: float) -> float | int | None:
        """The next size between lo and hi, or None when the bracket is as tight as asked."""
        if hi / lo <= 1 + self.rel_tol:
            return None
        mid = self.value(math.sqrt(lo * hi))
        return mid if lo < mid < hi else None


def trial_dir(out: Path, search: Search, value: float | int) -> Path:
    return out / f"{search.field.split('.')[-1]}={value:g}"


def run_trial(cfg: RunConfig, path: Path, search: Search) -> dict[str, Any]:
    """Train (or finish) one trial and read its outcome from its metrics."""
    status = trial_status(path, cfg)  # a trial that stopped at the target is done, as one at its budget
    if status != "done":
        train(cfg, path, resume=status == "partial")
    run = load_run(path)
    m = run.metrics
    steps = m["step"].to_numpy()
    gen = first_step_at_least(steps, m["test_acc"].to_numpy(), search.target)
    mem = first_step_at_least(steps, m["train_acc"].to_numpy(), search.target)  # like with like
    return {"value": getattr(cfg.task, search.field.split(".")[1]), "path": path.name,
            "n_train": int(run.task.batch("train").mask.sum()),
            "generalised": gen is not None, "memorization_step": mem, "generalization_step": gen,
            "last_step": int(steps[-1]), "outcome": outcome(gen, mem),
            "final_test_acc": float(m["test_acc"].iloc[-1])}


def _result(trials: list[dict], search: Search, finished: bool) -> dict[str, Any]:
    fail = [t["value"] for t in trials if not t["generalised"]]
    ok = [t["value"] for t in trials if t["generalised"]]
    below, above = (max(fail) if fail else None), (min(ok) if ok else None)
    if above is not None and below is not None and below > above:
        status = "not monotone: a smaller size generalised where a larger one did not"
    elif above is None:
        status = f"no trial generalised: the crossover is above hi = {search.hi:g} (or the budget is too small)"
    elif below is None:
        status = f"every trial generalised: the crossover is below lo = {search.lo:g}"
    elif finished and above / below > 1 + search.rel_tol and search.midpoint(below, above) is not None:
        status = f"budget spent: {len(trials)} trials (--max-trials) before hi / lo reached 1 + {search.rel_tol:g}"
    elif finished:
        status = "bracketed"
    else:
        status = "searching"
    return {"below": below, "above": above, "status": status, "trials": len(trials),
            "steps": int(sum(t["last_step"] for t in trials))}


def crossover(cfg: RunConfig, out: str | Path, field: str, lo: float, hi: float, max_trials: int = 8,
              rel_tol: float = 0.1, target: float = 0.99, steps: int | None = None,
              on_trial: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Search for the crossover data size (module docstring); returns the crossover.json document.
    steps: each trial's budget in optimizer steps (None: the base config's train.epochs).
    on_trial: called with each trial's row as it finishes (the CLI prints it)."""
    search = Search(field, lo, hi, max_trials, rel_tol, target, steps)
    search.check(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc_path = out / "crossover.json"
    doc = {"format": FORMAT, "search": asdict(search), "base": cfg.to_dict(), "trials": [], "crossover": None}
    if doc_path.exists():
        old = read_json(doc_path)
        if not isinstance(old, dict) or old.get("search") != doc["search"] or old.get("base") != doc["base"]:
            raise RunDirError(f"{out} holds another crossover search (its crossover.json has another base config or "
                              "search); choose another --out")
    trials: list[dict] = []

    def run(value: float | int) -> bool:
        row = run_trial(search.config(cfg, value), trial_dir(out, search, value), search)
        trials.append(row)
        doc.update(trials=trials, crossover=_result(trials, search, finished=False))
        atomic_write_json(doc_path, doc)
        if on_trial is not None:
            on_trial(row)
        return row["generalised"]

    lo_v, hi_v = search.value(lo), search.value(hi)
    if not run(lo_v) and run(hi_v):  # lo generalising already ends the search: the crossover is below it
        while len(trials) < max_trials and (mid := search.midpoint(lo_v, hi_v)) is not None:
            if run(mid):
                hi_v = mid
            else:
                lo_v = mid
    doc.update(crossover=_result(trials, search, finished=True))
    atomic_write_json(doc_path, doc)
    return doc


def load_crossover(path: str | Path) -> dict[str, Any] | None:
    """OUT/crossover.json, or None when `path` is not a crossover folder."""
    p = Path(path) / "crossover.json"
    if not p.is_file():
        return None
    doc = read_json(p)
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None
