"""Issue 18's intervention experiments, each a set of runs that differ from a base config in one way.

    python examples/interventions.py stablemax --out runs/interventions    # (g) StableMax and ⊥AdamW, no weight decay
    python examples/interventions.py grokfast --out runs/interventions     # (d) Grokfast EMA / MA against the baseline
    python examples/interventions.py numerics --out runs/interventions     # (b) float32 against float64 cross-entropy
    python examples/interventions.py lr --out runs/interventions           # (a) lr x5, x10, x50 at step 1000
    python examples/interventions.py lr_s5                                 # (a) the same on S5
    python examples/interventions.py weight_decay --out runs/interventions # (c) weight decay 0.3, 1, 3
    python examples/interventions.py weight_decay_small_p                  # (c) weight decay 0.01 .. 3 on p = 31
    python examples/interventions.py excluded_loss                         # (e) the excluded-loss regulariser
    python examples/interventions.py excluded_loss_113                     # (e) the same at the canonical size
    python examples/interventions.py stablemax --only adamw_wd1 --set train.epochs=100   # one variant, smaller

Every variant is an ordinary run directory OUT/<experiment>/<variant>/, trained (or resumed, when
the folder already holds the run: re-running the script finishes what a kill interrupted) and
analysed; then the script prints one row per variant (the first steps at 99% train and test
accuracy, the loss spikes, the final softmax collapse) and writes OUT/<experiment>/summary.json
and a comparison report OUT/<experiment>/report.html. The sizes are the issue's; `--set` changes
every variant (e.g. a shorter budget for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import grokscope
from grokscope.config import apply_overrides, parse_set
from grokscope.io import atomic_write_json
from grokscope.report import write_report


def _lr(at: int, factor: float, epochs: int = 4000) -> dict:
    return {"interventions": [{"kind": "lr_multiplier", "at_step": at, "factor": factor}], "train.epochs": epochs}


# experiment -> (what it asks, base preset, base overrides, {variant: overrides})
EXPERIMENTS: dict[str, tuple[str, str, dict, dict[str, dict]]] = {
    "stablemax": (
        "(g) Prieto et al. 2025: StableMax and ⊥AdamW grok without weight decay; x + y mod 113 on 40% of the pairs, "
        "stopped at 99% test accuracy or 3000 epochs",
        "nanda2023", {"task.frac_train": 0.4, "train.epochs": 3000, "train.stop_at_test_acc": 0.99},
        {"adamw_wd1": {},
         "adamw_wd0": {"optim.weight_decay": 0.0},
         "stablemax_wd0": {"optim.weight_decay": 0.0, "train.loss": "stablemax"},
         "orthoadamw_wd0": {"optim.weight_decay": 0.0, "optim.orthogonal": True},
         "orthoadamw_stablemax_wd0": {"optim.weight_decay": 0.0, "optim.orthogonal": True, "train.loss": "stablemax"}}),
    "grokfast": (
        "(d) Lee et al. 2024: Grokfast gradient filters at their published defaults against the canonical run, "
        "stopped at 99% test accuracy or 12000 epochs",
        "nanda2023", {"train.epochs": 12000, "train.stop_at_test_acc": 0.99},
        {"baseline": {},
         "grokfast_ema": {"interventions": [{"kind": "grokfast_ema", "alpha": 0.98, "lamb": 2.0}]},
         "grokfast_ma": {"interventions": [{"kind": "grokfast_ma", "window": 100, "lamb": 5.0}]}}),
    "numerics": (
        "(b) seed 004: float32 cross-entropy makes loss spikes; the canonical run, 12000 epochs, in each dtype",
        "nanda2023", {"train.epochs": 12000},
        {"float64": {"train.loss_dtype": "float64"}, "float32": {"train.loss_dtype": "float32"}}),
    "lr": (
        "(a) seed 003: the learning rate multiplied at step 1000, on x + y and x / y mod 113; the baselines run "
        "12000 epochs, the multiplied runs 4000 (3000 at the new rate: decoupled weight decay acts m times as fast)",
        "nanda2023", {"train.epochs": 12000},
        {f"{op}_{name}": {"task.op": op, **change} for op in ("add", "div")
         for name, change in (("x1", {}), ("x5", _lr(1000, 5)), ("x10", _lr(1000, 10)), ("x50", _lr(1000, 50)))}),
    "lr_s5": (
        "(a) seed 003 on S5: x o y in S_5 (the s5 preset, minibatches of 512, 13 steps an epoch), the learning "
        "rate multiplied at step 1000; the baseline runs 1500 epochs, the multiplied runs 500",
        "s5", {},
        {name: change for name, change in (("s5_x1", {}), ("s5_x5", _lr(1000, 5, 500)), ("s5_x10", _lr(1000, 10, 500)),
                                           ("s5_x50", _lr(1000, 50, 500)))}),
    "weight_decay": (
        "(c) seed 004: smaller weight decay delays grokking; the canonical run at wd 0.3, 1 and 3, 30000 epochs",
        "nanda2023", {"train.epochs": 30000, "train.stop_at_test_acc": 0.99},
        {f"wd{wd:g}": {"optim.weight_decay": wd} for wd in (0.3, 1.0, 3.0)}),
    "weight_decay_small_p": (
        "(c) seed 004: the wider range, weight decay 0.01 to 3 on x + y mod 31 (the quick preset), "
        "stopped at 99% test accuracy or 300000 epochs",
        "quick", {"train.epochs": 300_000, "train.stop_at_test_acc": 0.99, "train.eval_every": 50,
                  "train.checkpoint_every": 2000},
        {f"wd{wd:g}": {"optim.weight_decay": wd} for wd in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)}),
    "excluded_loss": (
        "(e) seed 004's future work: train on the excluded loss (coef > 0 penalises it, coef < 0 rewards it) on "
        "x + y mod 31 (the quick preset), stopped at 99% test accuracy or 8000 epochs",
        "quick", {"train.epochs": 8000, "train.stop_at_test_acc": 0.99},
        {"baseline": {}, **{f"coef{c:+g}": {"interventions": [{"kind": "excluded_loss", "coef": c}]}
                            for c in (1.0, 0.1, -0.1, -1.0)}}),
    "excluded_loss_113": (
        "(e) the excluded-loss regulariser on the canonical config (x + y mod 113), stopped at 99% test accuracy "
        "or 12000 epochs",
        "nanda2023", {"train.epochs": 12000, "train.stop_at_test_acc": 0.99},
        {"baseline": {}, **{f"coef{c:+g}": {"interventions": [{"kind": "excluded_loss", "coef": c}]}
                            for c in (1.0, -1.0)}}),
}


def first_step(m, column: str, at: float = 0.99) -> int | None:
    hit = m.loc[m[column] >= at, "step"]
    return int(hit.iloc[0]) if len(hit) else None


def run_variant(cfg, out: Path) -> Path:
    resume = (out / "config.json").is_file()
    before = last_step(out) if resume else None
    path = grokscope.train(cfg, out, resume=resume)
    if before is None or last_step(path) != before or not (path / "analysis" / "summary.json").is_file():
        grokscope.analyze(path)  # not again for a finished, analysed run: re-running only re-summarises
    return path


def last_step(path: Path) -> int | None:
    """The run's last logged step; None before its first row (a run killed that early)."""
    if not (path / "metrics.parquet").is_file():
        return None
    m = grokscope.load_run(path).metrics
    return int(m["step"].iloc[-1]) if len(m) else None


def key_steps(run) -> dict[int, int] | None:
    """For a run with the excluded-loss regulariser: the first step at which each key frequency was
    found, by its rule re-applied to the checkpoints at its re-derivation steps (None for other runs)."""
    from grokscope.analysis.modular.grid import grid_forward
    from grokscope.analysis.modular.measures import CheckpointAnalyzer
    from grokscope.tasks.cyclic import logit_shares

    reg = next((e for e in run.config.interventions if e.kind == "excluded_loss"), None)
    if reg is None:
        return None
    an = CheckpointAnalyzer(run.config.model, run.task)
    found = {}
    for step in filter(reg.derives_keys_at, run.steps):
        logits = an.group_logits(grid_forward(run.params(step), run.config.model, run.task.p).logits)
        r = logit_shares(an.group, logits)
        for k in (r >= reg.share_needed(an.group.n)).nonzero()[:, 0].tolist():
            found.setdefault(k, step)
    return dict(sorted(found.items()))


def row(name: str, path: Path, seconds: float) -> dict:
    run = grokscope.load_run(path)
    m, s = run.metrics, json.loads((path / "analysis" / "summary.json").read_text())
    out = {"variant": name, "steps": int(m["step"].iloc[-1]), "train_acc_99": first_step(m, "train_acc"),
           "test_acc_99": first_step(m, "test_acc"), "final_test_acc": float(m["test_acc"].iloc[-1]),
           "loss_spikes": s.get("loss_spikes"), "softmax_collapse_final": s.get("softmax_collapse_final"),
           "key_frequencies": s.get("key_frequencies"), "seconds": round(seconds, 1)}
    keys = key_steps(run)
    return out if keys is None else {**out, "regulariser_keys_first_found": keys}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment", choices=sorted(EXPERIMENTS))
    ap.add_argument("--out", default="runs/interventions")
    ap.add_argument("--only", nargs="*", help="these variants only")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override for every variant")
    args = ap.parse_args()
    logging.basicConfig(format="%(name)s: %(message)s")
    logging.getLogger("grokscope.interventions").setLevel(logging.INFO)  # e.g. the regulariser's keys as found
    question, preset, base, variants = EXPERIMENTS[args.experiment]
    unknown = sorted(set(args.only or ()) - set(variants))
    if unknown:
        ap.error(f"--only: unknown variants {unknown} (allowed: {', '.join(variants)})")
    folder = Path(args.out) / args.experiment
    print(question)
    rows, paths = [], []
    for name, change in variants.items():
        if args.only and name not in args.only:
            continue
        cfg = apply_overrides(grokscope.get_preset(preset), {**base, **change, **parse_set(args.set), "name": name,
                                                             "train.progress": False})
        t0 = time.perf_counter()
        paths.append(run_variant(cfg, folder / name))
        rows.append(row(name, paths[-1], time.perf_counter() - t0))
        print("  ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    atomic_write_json(folder / "summary.json", {"experiment": args.experiment, "question": question, "preset": preset,
                                                "base": base, "set": args.set, "rows": rows})
    write_report(paths, out=folder / "report.html")
    print(f"written: {folder / 'summary.json'}, {folder / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
