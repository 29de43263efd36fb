"""The `grokscope` command line. Each verb is a thin wrapper over the Python API of the same name.

Exit codes: 0 ok; 2 bad input (one line on stderr naming the field and what is allowed); 1 other failure.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from pathlib import Path

from grokscope._version import __version__
from grokscope.config import ConfigError, RunConfig, parse_seeds, parse_set
from grokscope.presets import make_config
from grokscope.io import RunDirError, WriteError, progress_bar

log = logging.getLogger("grokscope")

class UsageError(Exception):
    """Bad command-line input (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, exit 2
        raise UsageError(message)


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    sets = [*(args.set or []), *([f"train.log={args.log}"] if getattr(args, "log", None) else [])]
    return make_config(args.config, args.preset, parse_set(sets))


def cmd_train(args: argparse.Namespace) -> int:
    from grokscope.trainer import check_ensemble_size, default_out, plan, train, train_ensemble

    if args.resume:
        if args.config or args.preset or args.set or args.log or args.seeds is not None or args.out or args.overwrite:
            raise UsageError("--resume RUN continues a run with its stored config; drop CONFIG, --preset, --set, --log, "
                             "--seeds, --out and --overwrite")
        cfgs, outs = [_stored_config(Path(args.resume))], [Path(args.resume)]
    else:
        cfg = _config_from_args(args)
        if args.seeds is not None:
            seeds = parse_seeds(args.seeds, "--seeds")
            check_ensemble_size(len(seeds), "--seeds", "seeds", "grokscope sweep")  # before building one config per seed
            base = Path(args.out) if args.out else default_out(cfg)
            cfgs, outs = [cfg.replace(**{"train.seed": s}) for s in seeds], [base / f"seed{s}" for s in seeds]
        else:
            cfgs, outs = [cfg], [Path(args.out) if args.out else default_out(cfg)]
    if args.dry_run:
        return _print_plan(plan(cfgs, outs, resume=bool(args.resume), overwrite=args.overwrite))
    if args.resume:
        print(f"resumed and finished: {train(cfgs[0], outs[0], resume=True)}")
    elif args.seeds is not None:
        paths = train_ensemble(cfgs, outs, overwrite=args.overwrite)
        print(f"trained {len(paths)} runs under {outs[0].parent}")
    else:
        t0 = time.perf_counter()
        path = train(cfgs[0], outs[0], overwrite=args.overwrite)
        _print_headline(path, time.perf_counter() - t0)
    return 0


def _stored_config(run: Path) -> RunConfig:
    """The config a run was started with, for --resume; a damaged or hand-edited config.json names the file."""
    from grokscope.runstore import RunStore

    raw, _ = RunStore(run).read_config()
    try:
        return RunConfig.from_dict(raw)
    except ConfigError as err:
        raise RunDirError(f"{RunStore(run).config_path}: {err}") from None


def _print_plan(p: dict) -> int:
    runs = p["runs"]
    free = "unknown" if p["free_bytes"] is None else f"{p['free_bytes'] / 2**30:.1f} GiB"
    print(f"dry run, nothing written: would train {runs[0]}" + (f" and {len(runs) - 1} more" if len(runs) > 1 else ""))
    print(f"config: {p['config']}")
    print(f"task: {p['task']}, {p['n_train']} train / {p['n_test']} test examples; "
          f"model: {p['n_params']:,} parameters; engine {p['engine']} on {p['device']}")
    print(f"{p['steps']} steps, {p['checkpoints']} checkpoints per run; "
          f"memory: ~{p['memory_bytes'] / 2**30:.2f} GiB needed, {free} free")
    return 0


def _print_headline(path: Path, seconds: float) -> None:
    from grokscope.analysis.phases import grokking_step
    from grokscope.run import load_run

    m = load_run(path).metrics
    step = grokking_step(m)
    last = m.iloc[-1]
    print(f"run: {path}")
    print(f"wall time: {seconds:.1f} s; final train_acc {last.train_acc:.4f}, test_acc {last.test_acc:.4f}")
    epoch = "not reached" if step is None else int(m.loc[m.step == step, "epoch"].iloc[0])
    print(f"grokking epoch (first test_acc >= 0.99): {epoch}")


# analyze() and the loggers name their own arguments; the CLI names them as flags
_FLAGS = {"max_checkpoints": "--max-checkpoints", "key_rule.threshold": "--threshold", "train.log": "--log",
          "window": "--window", "n_sims": "--sims", "step": "--step", "params": "--params", "k": "--k",
          "trace_samples": "--trace", "density_vectors": "--density", "checkpoints": "--checkpoints",
          "step_a": "--connect", "step_b": "--connect", "steps": "--curve-steps", "slice": "--slice", "grid": "--grid",
          "span": "--span", "chains": "--chains", "draws": "--draws", "burn_in": "--burn-in", "eps": "--eps",
          "gamma": "--gamma", "nbeta": "--nbeta", "calibrate": "--calibrate", "other": "--to", "circuits": "--circuits",
          "k_a": "--k-a", "points": "--grid", "relax_steps": "--relax-steps", "k_heads": "--k-heads",
          "n_examples": "--examples", "test_examples": "--test-examples", "ig_steps": "--ig-steps",
          "random_draws": "--random-draws", "shapley": "--shapley", "shapley_examples": "--shapley-examples"}


def _as_flag(err: ConfigError) -> ConfigError:
    """The same error named by the flag the user typed, where a flag stands for the field."""
    return ConfigError(_FLAGS[err.key], str(err).split(": ", 1)[1]) if err.key in _FLAGS else err


@contextlib.contextmanager
def _flags_named():
    """Inside: a ConfigError from the API comes out named by the flag (`_as_flag`)."""
    try:
        yield
    except ConfigError as err:
        raise _as_flag(err) from None


def _print_frame(df) -> None:
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", None, "display.max_rows", None):
        print(df.to_string(index=False, float_format=lambda x: f"{x:.4g}"))


def _bar_progress(bar):
    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return progress


def _expand_runs(paths: list[str]) -> list[str]:
    """A folder that is not a run but holds runs (an ensemble's OUT, a sweep) stands for its runs."""
    from grokscope.runstore import expand_runs

    return [str(p) for p in expand_runs(paths)]


def cmd_analyze(args: argparse.Namespace) -> int:
    from grokscope.analysis import KeyRule, analyze
    from grokscope.loggers import check_backend, log_progress

    if args.log:
        with _flags_named():
            check_backend(args.log)
    for run in _expand_runs(args.runs):
        t0 = time.perf_counter()
        with progress_bar(None, unit="ckpt", desc=str(run)) as bar, _flags_named():
            result = analyze(run, max_checkpoints=args.max_checkpoints, progress=_bar_progress(bar),
                             key_rule=KeyRule(threshold=args.threshold))
        if args.log:
            log_progress(args.log, run, result.progress)
        summary = result.summary
        print(f"{run}: {summary.get('n_checkpoints')} checkpoints analysed in {time.perf_counter() - t0:.1f} s, "
              f"written to {result.path}; analyses {', '.join(summary.get('analyses') or []) or 'none'}"
              + "".join(f"; {fact}" for fact in _facts(summary)))
    return 0


def _facts(summary: dict) -> list[str]:
    """The headline findings a summary holds, for the line `analyze` prints (each only where measured)."""
    out = [f"grokking step {summary.get('grokking_step')}"]
    if "key_frequencies" in summary:
        out.append(f"key frequencies {summary['key_frequencies']}")
    if "key_irreps" in summary:
        out.append(f"key irreps of {summary.get('irrep_group')} {summary['key_irreps'] or 'none'}")
    if "induction_heads" in summary:
        heads = summary["induction_heads"]
        out.append(f"induction heads {heads} (first at step {summary.get('induction_step')})" if heads else "induction heads none")
    changes = summary.get("component_changes")
    if changes:
        out.append("phase changes " + ", ".join(f"{k} {(c or {}).get('steepest')}" for k, c in changes.items()))
    return out


def cmd_formation(args: argparse.Namespace) -> int:
    from grokscope.analysis.chunks import formation_test

    folder = len(args.runs) == 1 and Path(args.runs[0]).is_dir() and not (Path(args.runs[0]) / "config.json").is_file()
    out = Path(args.out) if args.out else (Path(args.runs[0]) if folder else Path(".")) / "formation.json"
    with _flags_named():
        test = formation_test(args.runs, window=args.window, n_sims=args.sims, seed=args.seed, out=out)
    for row in test.per_run:
        print(f"{row['run']}: {row['formations']} formations at {', '.join(map(str, row['steps'])) or '-'}"
              f" ({row['pairs']} pairs, {row['triples']} triples)")
    o = test.observed
    print(f"{o['formations']} formations in {len(test.per_run)} runs (window {test.window:g} steps): {o['single']} single, "
          f"{o['pairs']} pairs, {o['triples']} groups of 3 or more; {o['in_groups']} formations "
          f"({test.share_in_groups:.0%}) in groups, Poisson null {test.null_share_in_groups:.0%}")
    print(f"verdict: {test.verdict()}; written to {out}")
    return 0


def cmd_landscape(args: argparse.Namespace) -> int:
    from grokscope.analysis.landscape.verbs import connect_file, landscape

    unit, desc = ("step", "relax") if args.circuits is not None else ("ckpt", "hessian")
    with progress_bar(None, unit=unit, desc=desc) as bar, _flags_named():
        res = landscape(args.run, step=args.step, split=args.split, params=args.params, k=args.k,
                        trace_samples=args.trace, density_vectors=args.density, checkpoints=args.checkpoints,
                        seed=args.seed, device=args.device, out=args.out, progress=_bar_progress(bar),
                        connect=args.connect, other=args.to, bezier=not args.no_bezier, curve_steps=args.curve_steps,
                        slice=args.slice, grid=args.grid, span=args.span, circuits=args.circuits, k_a=args.k_a,
                        relax_steps=args.relax_steps)
    folder = Path(args.out or Path(args.run) / "landscape")
    if args.circuits is not None:
        _print_walk(args.run, res)
        print(f"{res.seconds:.1f} s; written to {folder / f'circuits-{res.a}-{res.b}-{args.split}.json'} (and .parquet)")
        return 0
    if args.slice is not None:
        surf = res["surface"]
        print(f"{args.run}: {args.slice} slice of the {args.split} loss, {len(surf)} points: loss {surf['loss'].min():.4g} "
              f"to {surf['loss'].max():.4g}" + (f"; the plane holds {res['explained']:.1%} of the trajectory's "
                                                f"spread ({len(res['trajectory'])} checkpoints)" if "explained" in res else ""))
        print(f"written to {folder / f'slice-{args.slice}-{args.split}.parquet'}")
        return 0
    if args.connect is not None:
        a, b = args.connect
        print(f"{args.run} step {a} -> {args.to or args.run} step {b} ({args.split} loss): linear-path barrier "
              f"{res.linear_barrier:.4g}" + ("" if res.bezier_barrier is None else
                                            f"; trained Bezier curve ({args.curve_steps} steps) barrier {res.bezier_barrier:.4g}"))
        _print_frame(res.path)
        print(f"{res.seconds:.1f} s; written to {folder / connect_file(res)}")
        return 0
    if args.checkpoints is not None:
        _print_frame(res)
        print(f"written to {folder / f'hessian-{args.split}.parquet'}")
        return 0
    eff = res.effective_dimension()
    print(f"{args.run} step {res.step}, {res.split} loss {res.loss:.4g}, {res.dim:,} parameters"
          f" ({', '.join(res.params) if args.params else 'all'})")
    print(f"top {len(res.eigenvalues)} Hessian eigenvalues: " + ", ".join(f"{e:.4g}" for e in res.eigenvalues))
    if res.trace is not None:
        print(f"trace (Hutchinson, {args.trace} probes): {res.trace:.4g} +- {res.trace_se:.2g}")
    if res.density is not None:
        print(f"spectral density ({args.density} probes): trace {res.density.trace():.4g}; eigenvalues above "
              f"{eff['threshold']:g}: ~{eff['density_estimate']:.0f}")
    print(f"effective dimension (eigenvalues > {eff['threshold']:g} among the top {eff['k']}): {eff['top_k_above']}")
    print(f"{res.n_hvp} Hessian-vector products in {res.seconds:.1f} s; written to "
          f"{folder / f'hessian-{res.split}-step{res.step}.json'}")
    return 0


def _print_walk(run: str, w) -> None:
    d, v = w.direction, w.verdict
    print(f"{run} step {w.step}: keep {w.a}, ablate {w.b} ({w.split} examples, {w.dim:,} parameters)")
    print(f"direction: {w.b}'s top Hessian eigenvector (eigenvalue {d['lambda_1_b']:.4g}; {d['v_b_share_in_a']:.1%} of it "
          f"inside {w.a}'s top {d['k_a']}) projected off them; curvature along it: {w.a} {d['curvature_a']:.4g}, "
          f"{w.b} {d['curvature_b']:.4g}, joint {d['curvature_joint']:.4g} (joint top eigenvalues "
          f"{d['eigenvalues_joint'][0]:.4g} .. {d['eigenvalues_joint'][-1]:.4g})")
    cols = ["t", "joint", f"loss_{w.a}", f"loss_{w.b}", "relaxed_joint", f"relaxed_loss_{w.a}", f"relaxed_loss_{w.b}",
            "moved", "lambda_min_orthogonal"]
    _print_frame(w.walk[[c for c in cols if c in w.walk]])
    yes = lambda x: "yes" if x else "no"  # noqa: E731
    print(f"orthogonal minimum: {yes(v['orthogonal_minimum'])} (worst lambda_min {v['worst_lambda_min']:.3g} against "
          f"lambda_1 {v['lambda_1']:.3g}); sloped: {yes(v['sloped'])}; {w.a} kept: {yes(v['circuit_kept'])}; "
          f"sloped canyon: {yes(v['sloped_canyon'])}")


def cmd_llc(args: argparse.Namespace) -> int:
    from grokscope.analysis.landscape.verbs import llc

    sgld = {k: v for k, v in (("chains", args.chains), ("draws", args.draws), ("burn_in", args.burn_in), ("eps", args.eps),
                              ("gamma", args.gamma), ("nbeta", args.nbeta), ("seed", args.seed)) if v is not None}
    sgld["batch_size"] = None if args.batch_size == 0 else args.batch_size
    if args.batch_size < 0:
        raise ConfigError("--batch-size", f"must be an integer >= 0 (0: full batch; got {args.batch_size})")
    with progress_bar(None, unit="ckpt", desc="llc") as bar, _flags_named():
        res = llc(args.run, step=args.step, split=args.split, checkpoints=args.checkpoints, calibrate=args.calibrate,
                  device=args.device, out=args.out, progress=_bar_progress(bar), **sgld)
    folder = Path(args.out or Path(args.run) / "landscape")
    if args.calibrate or args.checkpoints is not None:
        _print_frame(res)
        name = f"llc-calibration-{args.split}.parquet" if args.calibrate else f"llc-{args.split}.parquet"
        print(f"written to {folder / name}")
        return 0
    s = res.settings
    print(f"{args.run} step {res.step}: LLC {res.llc:.4g} +- {res.llc_std:.2g} over {s['chains'] - len(res.diverged)} chains"
          f" (per chain {', '.join(f'{x:.4g}' for x in res.per_chain)}); L_n(w*) {res.init_loss:.4g}, n beta {res.nbeta:.4g}")
    print(f"SGLD: eps {s['eps']:g}, gamma {s['gamma']:g}, {s['burn_in']} burn-in + {s['draws']} draws, batch "
          f"{s['batch_size'] or 'full'}" + (f"; diverged chains {res.diverged}" if res.diverged else ""))
    print(f"{res.seconds:.1f} s; written to {folder / f'llc-{args.split}-step{res.step}.json'} (and its -trace.parquet)")
    return 0


def cmd_saliency(args: argparse.Namespace) -> int:
    from grokscope.analysis.saliency import saliency

    with progress_bar(None, unit="ckpt", desc="saliency") as bar, _flags_named():
        res = saliency(args.run, checkpoints=args.checkpoints, k=args.k, k_heads=args.k_heads, n_examples=args.examples,
                       test_examples=args.test_examples or None, ig_steps=args.ig_steps, random_draws=args.random_draws,
                       shapley=args.shapley, seed=args.seed, device=args.device, out=args.out, progress=_bar_progress(bar))
    cols = ["step", "test_acc"] + [c for c in res.progress.columns if c.endswith((".skew", ".topk_test_acc", ".randomk_test_acc"))]
    _print_frame(res.progress[cols])
    if res.shapley is not None:
        top = res.shapley.sort_values("shapley", ascending=False).head(5)
        print("largest Shapley values at step " + str(int(top["step"].iloc[0])) + ": " +
              ", ".join(f"{g} {u}: {v:.3g}" for g, u, v in zip(top["group"], top["unit"], top["shapley"])))
    print(f"{res.seconds:.1f} s; written to {Path(args.out or Path(args.run) / 'saliency')}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from grokscope.analysis import stale
    from grokscope.report import write_report
    from grokscope.run import load_run
    from grokscope.sweeps import load_sweep
    from grokscope.sweeps.crossover import load_crossover

    def folder(path: str) -> bool:  # a sweep or a crossover search: its own report
        return load_sweep(path) is not None or load_crossover(path) is not None

    runs = args.runs if len(args.runs) == 1 and folder(args.runs[0]) else _expand_runs(args.runs)
    out = write_report(runs, out=args.out, png_dir=args.png, reanalyze=args.reanalyze)
    for r in runs:  # say it where the user looks, not only in the page
        if not folder(r):
            run = load_run(r)
            why = stale(run, run.analysis().summary)
            if why:
                print(f"grokscope: warning: {r}: {why}", file=sys.stderr)
    print(f"report: {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from grokscope.analysis import load_analysis
    from grokscope.quickstart import demo, demo_config

    overrides = parse_set(args.set or [])
    cfg = demo_config(overrides)  # bad --set values fail here, before anything is written
    out = Path(args.out) if args.out else Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.dry_run:
        from grokscope.trainer import plan

        return _print_plan(plan([cfg], [out], overwrite=args.overwrite))
    print(f"training the canonical run (x + y mod 113, {cfg.train.epochs} epochs), then analysing and reporting it, "
          f"into {out} ...", flush=True)
    t0 = time.perf_counter()
    demo(out, overrides, overwrite=args.overwrite)
    _print_headline(out, time.perf_counter() - t0)
    summary = load_analysis(out).summary or {}
    print(f"key frequencies: {summary.get('key_frequencies')}; phases: {summary.get('phases')}")
    print(f"neurons single-frequency: {summary.get('frac_neurons_single_frequency')}; "
          f"logit fit variance explained: {summary.get('logit_fit_variance_explained')}")
    print(f"report: {out / 'report.html'}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from grokscope.sweeps import load_spec, run_sweep

    spec = load_spec(args.spec, parse_set(args.set or []))  # every trial's config is checked before anything runs
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{Path(args.spec).stem}"
    if args.dry_run:
        print(f"dry run, nothing written: sweep {spec.name}: {len(spec.trials)} trials into {out}, "
              f"up to {max(t.config.total_steps() for t in spec.trials)} steps each; base config {spec.base!r}")
        for t in spec.trials:
            print(f"  {t.id}: " + ", ".join(f"{k}={v!r}" for k, v in t.overrides.items()))
        return 0
    print(f"sweep {spec.name}: {len(spec.trials)} trials into {out} ({args.backend} backend)", flush=True)
    t0 = time.perf_counter()
    result = run_sweep(spec, out, backend=args.backend, workers=args.workers, threads=args.threads, group=args.group,
                       address=args.address)
    failed = sorted(t for t, s in result.items() if s == "failed")
    print(f"{len(result) - len(failed)} of {len(spec.trials)} trials done in {time.perf_counter() - t0:.1f} s"
          + (f"; failed: {', '.join(failed)} (errors in {out / 'failures'})" if failed else "")
          + f"; index {out / 'index.sqlite'}; report: grokscope report {out}")
    return 1 if failed else 0


def cmd_crossover(args: argparse.Namespace) -> int:
    from grokscope.report import write_report
    from grokscope.sweeps.crossover import crossover

    cfg = _config_from_args(args)
    out = Path(args.out) if args.out else Path("runs") / f"crossover-{cfg.task.name}"
    budget = f"{args.steps} steps" if args.steps else f"{cfg.train.epochs} epochs"
    print(f"crossover search over {args.field} in [{args.lo:g}, {args.hi:g}] into {out}: at most {args.max_trials} "
          f"trials of {budget}, each stopping at test acc >= {args.target:g}", flush=True)
    print(f"{'trial':>5} {args.field:>16} {'memorised':>10} {'generalised':>12} {'steps':>8}  outcome", flush=True)
    count = iter(range(1, 10 ** 6))

    def show(row: dict) -> None:
        print(f"{next(count):>5} {row['value']:>16g} {str(row['memorization_step']):>10} "
              f"{str(row['generalization_step']):>12} {row['last_step']:>8}  {row['outcome']}", flush=True)

    doc = crossover(cfg, out, args.field, args.lo, args.hi, max_trials=args.max_trials, rel_tol=args.rel_tol,
                    target=args.target, steps=args.steps, on_trial=show)
    r = doc["crossover"]
    print(f"{r['status']}: largest size that did not generalise {r['below']}, smallest that did {r['above']} "
          f"({r['trials']} trials, {r['steps']} steps); report: {write_report(out)}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    import pandas as pd

    from grokscope.sweeps import query_runs

    cols = [c.strip() for c in args.columns.split(",")] if args.columns else None
    df = query_runs(args.dir, args.where, cols)
    if not cols and len(df):
        swept = [c for c in df.columns if "." in c and df[c].astype(str).nunique() > 1]
        df = df[["path", *swept, "last_step", "grokking_step", "final_test_acc"]]
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_columns", None):
        print(df.to_string(index=False) if len(df) else "no runs match")
    return 0


def _landscape_tail(p: argparse.ArgumentParser, seed_help: str, func, folder: str = "RUN/landscape") -> None:
    """The flags `landscape`, `llc` and `saliency` share after their own."""
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--out", help=f"folder for the results (default {folder})")
    p.set_defaults(func=func)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="grokscope", description="Train, analyse and report grokking runs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument("--version", action="version", version=f"grokscope {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train one run (or an ensemble with --seeds)")
    p.add_argument("config", nargs="?", help="a YAML or JSON config file")
    p.add_argument("--preset", help="a named config, e.g. nanda2023 or tiny")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. optim.lr=3e-3")
    p.add_argument("--out", help="run directory (default runs/<op><p>-seed<seed>-<time>)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in RUN from its last saved state")
    p.add_argument("--seeds", help="train an ensemble over train.seed, e.g. 0-63; members go to OUT/seed<N>")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out (its run files are deleted)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the config, memory and output folder, say what would be trained, and write nothing")
    p.add_argument("--log", metavar="BACKEND", help="also log metrics to wandb or tensorboard (= --set train.log=BACKEND)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("analyze", help="write RUN/analysis/")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories; a folder of runs (an ensemble, a sweep) stands for its runs")
    p.add_argument("--max-checkpoints", type=int, metavar="N", help="analyse N evenly spaced checkpoints (default: all)")
    p.add_argument("--threshold", type=float, default=0.85,
                   help="share of a neuron's variance in one frequency to count it single-frequency (default 0.85)")
    p.add_argument("--log", metavar="BACKEND", help="also log the progress measures to wandb or tensorboard")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("formation", help="test when circuits form (chunked MLPs) against a Poisson process")
    p.add_argument("runs", nargs="+", metavar="RUN", help="analysed runs; a folder of runs (an ensemble, a sweep) stands for its runs")
    p.add_argument("--window", type=int, help="formations this many steps apart or fewer come together "
                   "(default: the first run's analysis window: 2 percent of its steps)")
    p.add_argument("--sims", type=int, default=10000, help="simulations of the Poisson null (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulations (default 0)")
    p.add_argument("--out", help="where to write the JSON (default FOLDER/formation.json for a folder of runs, "
                   "else ./formation.json)")
    p.set_defaults(func=cmd_formation)

    p = sub.add_parser("landscape", help="the loss Hessian at a checkpoint or over checkpoints (eigenvalues, trace, density)")
    p.add_argument("run", metavar="RUN", help="a run directory")
    p.add_argument("--step", type=int, help="the checkpoint (default: the last)")
    p.add_argument("--split", default="train", choices=("train", "test"), help="whose loss (default train)")
    p.add_argument("--params", nargs="+", metavar="PATTERN", help="only these parameters, e.g. 'blocks.0.mlp.*' (default all)")
    p.add_argument("--k", type=int, default=20, help="top eigenvalues (default 20)")
    p.add_argument("--trace", type=int, default=0, metavar="N", help="also the Hutchinson trace from N probes")
    p.add_argument("--density", type=int, default=0, metavar="N", help="also the spectral density from N probes (SLQ)")
    p.add_argument("--checkpoints", type=int, metavar="N", help="the top-k at N evenly spaced checkpoints instead")
    p.add_argument("--connect", type=int, nargs=2, metavar=("A", "B"),
                   help="instead: the loss barrier between checkpoints A and B (linear path and a trained Bezier curve)")
    p.add_argument("--to", metavar="RUN2", help="with --connect: B is a checkpoint of RUN2 (a run of the same model)")
    p.add_argument("--no-bezier", action="store_true", help="with --connect: the linear path only")
    p.add_argument("--curve-steps", type=int, default=200, help="with --connect: Adam steps of the Bezier curve (default 200)")
    p.add_argument("--slice", choices=("1d", "2d", "pca"),
                   help="instead: a slice of the loss surface along filter-normalised random directions (1d, 2d) or in "
                        "the plane of the training trajectory's top two principal components (pca; --checkpoints N of them)")
    p.add_argument("--circuits", nargs="*", metavar="CIRCUIT",
                   help="instead: walk along a direction that keeps circuit A and ablates circuit B (key frequencies such "
                        "as 14 35, or components such as digit pattern; none: the run's two main ones) and test for a "
                        "sloped canyon")
    p.add_argument("--k-a", type=int, default=10, help="with --circuits: A's top eigenvectors projected out (default 10)")
    p.add_argument("--relax-steps", type=int, default=50,
                   help="with --circuits: line-searched gradient steps relaxing each walk point orthogonally (default 50)")
    p.add_argument("--grid", type=int, help="with --slice: points per axis (default 21); with --circuits: points along "
                   "the walk (default 11)")
    p.add_argument("--span", type=float, help="with --slice: the range, in direction units (pca: x the trajectory's; "
                   "default 1); with --circuits: the walk's half-length in parameter space (default: where B's "
                   "quadratic loss has risen by ln V)")
    _landscape_tail(p, "seed of the random start and probes (default 0)", cmd_landscape)

    p = sub.add_parser("llc", help="the local learning coefficient by SGLD (stacked chains), at a checkpoint or over them")
    p.add_argument("run", metavar="RUN", help="a run directory")
    p.add_argument("--step", type=int, help="the checkpoint (default: the last)")
    p.add_argument("--split", default="train", choices=("train", "test"), help="whose loss (default train)")
    p.add_argument("--checkpoints", type=int, metavar="N", help="the LLC at N evenly spaced checkpoints")
    p.add_argument("--calibrate", action="store_true", help="sweep --eps and --gamma at one checkpoint; say which are stable")
    p.add_argument("--chains", type=int, default=4, help="SGLD chains, run at once (default 4)")
    p.add_argument("--draws", type=int, default=100, help="draws per chain after burn-in (default 100)")
    p.add_argument("--burn-in", type=int, default=50, help="steps before the draws (default 50)")
    p.add_argument("--eps", type=float, default=1e-4, help="SGLD step size (default 1e-4)")
    p.add_argument("--gamma", type=float, default=1e4, help="localisation strength (default 1e4)")
    p.add_argument("--nbeta", type=float, help="n beta, the inverse temperature times n (default n / log n)")
    p.add_argument("--batch-size", type=int, default=512, help="SGLD minibatch (default 512; 0: the whole split)")
    _landscape_tail(p, "seed of the chains (default 0)", cmd_llc)

    p = sub.add_parser("saliency", help="neuron and head saliency (integrated gradients) over checkpoints, and top-k deletion")
    p.add_argument("run", metavar="RUN", help="a run directory")
    p.add_argument("--checkpoints", type=int, default=50, metavar="N", help="N evenly spaced checkpoints (default 50)")
    p.add_argument("--k", type=int, help="neurons deleted per layer, top-k against random-k (default a tenth of the layer)")
    p.add_argument("--k-heads", type=int, default=1, help="heads deleted per layer (default 1)")
    p.add_argument("--examples", type=int, default=256, help="training examples for the integrated gradients (default 256)")
    p.add_argument("--test-examples", type=int, default=2048, help="test examples for the deletions (default 2048; 0: all)")
    p.add_argument("--ig-steps", type=int, default=64, help="integration points of the integrated gradients (default 64)")
    p.add_argument("--random-draws", type=int, default=3, help="random-k deletions averaged (default 3)")
    p.add_argument("--shapley", type=int, default=0, metavar="P",
                   help="also the neurons' Shapley values at the last checkpoint, from P sampled orders (default 0: none)")
    _landscape_tail(p, "seed of the examples and the random deletions (default 0)", cmd_saliency, "RUN/saliency")

    p = sub.add_parser("report", help="write RUN/report.html, or a comparison report for several runs")
    p.add_argument("runs", nargs="+", metavar="RUN", help="one run (its report), several (a comparison), or a sweep folder (the sweep report)")
    p.add_argument("--out", help="where to write the HTML (default RUN/report.html, or ./comparison.html)")
    p.add_argument("--png", metavar="DIR", help="also export every figure as PNG (and the animation as GIF)")
    p.add_argument("--reanalyze", action="store_true", help="run grokscope analyze on each run first")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("sweep", help="run every trial of a sweep spec (resumable); see docs/sweeps.md")
    p.add_argument("spec", metavar="SPEC", help="a YAML sweep spec")
    p.add_argument("--out", help="the sweep folder (default runs/sweep-<spec name>); re-run with the same to resume")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a key of the base config, after the spec's own set (a swept key still varies)")
    p.add_argument("--backend", default="local", choices=("local", "ray"), help="local (a process pool, the default) or ray")
    p.add_argument("--address", help="a running Ray cluster (default: a local Ray instance)")
    p.add_argument("--workers", type=int, help="local processes (default: cores / threads)")
    p.add_argument("--threads", type=int, help="torch threads per trial (default 1 on CPU)")
    p.add_argument("--group", type=int, help="most trials trained as one stacked ensemble (default 1 on CPU, 64 on CUDA)")
    p.add_argument("--dry-run", action="store_true", help="check the spec and list its trials; write nothing")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("crossover", help="search the training-set size where runs start to generalise (resumable)")
    p.add_argument("config", nargs="?", help="a YAML or JSON config file (the base of every trial)")
    p.add_argument("--preset", help="a named config, e.g. quick or digit_add5_finite")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key of the base")
    p.add_argument("--field", default="task.frac_train", help="task.frac_train (tables) or task.n_train (sampled tasks)")
    p.add_argument("--lo", type=float, required=True, help="a size expected not to generalise")
    p.add_argument("--hi", type=float, required=True, help="a size expected to generalise")
    p.add_argument("--max-trials", type=int, default=8, help="the compute budget in runs of train.epochs each (default 8)")
    p.add_argument("--rel-tol", type=float, default=0.1, help="stop once hi / lo <= 1 + this (default 0.1)")
    p.add_argument("--target", type=float, default=0.99, help="test accuracy that counts as generalising (default 0.99)")
    p.add_argument("--steps", type=int, help="each trial's budget in optimizer steps, whatever its size (default: train.epochs)")
    p.add_argument("--out", help="the search folder (default runs/crossover-<task>); re-run with the same to resume")
    p.set_defaults(func=cmd_crossover)

    p = sub.add_parser("runs", help="the run index of a folder of runs (a sweep, an ensemble), filtered")
    p.add_argument("dir", metavar="DIR", help="a folder; every run below it is listed (its index is DIR/index.sqlite)")
    p.add_argument("--where", help='an SQL condition, e.g. \'"optim.weight_decay" >= 1 AND grokking_step IS NOT NULL\'')
    p.add_argument("--columns", help="comma-separated columns to show (default: path, the fields that vary, results)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("demo", help="the canonical run: train, analyse, report")
    p.add_argument("--out", help="run directory (default runs/demo-<time>)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--dry-run", action="store_true", help="check and say what would be trained; write nothing")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as err:
        print(f"grokscope: error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ConfigError, UsageError) as err:
        print(f"grokscope: error: {err}", file=sys.stderr)
        return 2
    except WriteError as err:
        print(f"grokscope: error: {err}", file=sys.stderr)
        return 1
    except RunDirError as err:
        print(f"grokscope: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("grokscope: interrupted; resume with `grokscope train --resume RUN`", file=sys.stderr)
        return 130
    except Exception as err:  # one line for users; the traceback with GROKSCOPE_DEBUG=1
        if os.environ.get("GROKSCOPE_DEBUG"):
            raise
        print(f"grokscope: error: {err.__class__.__name__}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
