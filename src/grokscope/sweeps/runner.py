"""Running a sweep: every trial an ordinary run directory under OUT, resumable, failures recorded.

    OUT/sweep.json            the spec, the swept fields and each trial's overrides (written first)
    OUT/t0000/ ...            one run directory per trial (config.json, metrics, checkpoints, ...)
    OUT/failures/t0003.txt    the one-line error of a trial that failed (removed once it succeeds)
    OUT/index.sqlite          the run index over the trials (grokscope.sweeps.index)

A re-run of the same spec skips finished trials, resumes interrupted ones and retries failed ones.
Work is cut into jobs: trials whose configs differ only in the ensemble member keys (seed, data
seed, lr, weight decay, name) and have not started train as one stacked ensemble of up to
`group` members (the main lever on a GPU); the others train alone. Backends run the jobs:
`local` in a process pool with `threads` torch threads per process, `ray` as Ray tasks.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Sequence

from grokscope.config import ConfigError, RunConfig
from grokscope.io import RunDirError, atomic_write_json, atomic_write_text, check_folder, progress_bar, read_json
from grokscope.runstore import RunStore
from grokscope.sweeps.spec import SweepSpec, Trial, load_spec
from grokscope.trainer import shared_config

log = logging.getLogger(__name__)

FORMAT = "grokscope.sweep.v1"
BACKENDS = ("local", "ray")


def trial_status(path: Path, cfg: RunConfig) -> str:
    """'done' (the last step's checkpoint and metrics row are written: the final step, or the step
    where train.stop_at_test_acc ended the run), 'partial' (a run that can resume) or 'new'."""
    store = RunStore(path)
    if not store.exists():
        return "new"
    try:
        steps = store.checkpoint_steps()
        metrics = store.load_metrics()
    except RunDirError:
        return "partial"
    if not steps or not len(metrics) or int(metrics["step"].iloc[-1]) != steps[-1]:
        return "partial"
    stop_at = cfg.train.stop_at_test_acc
    stopped = stop_at is not None and float(metrics["test_acc"].iloc[-1]) >= stop_at
    return "done" if steps[-1] == cfg.total_steps() or stopped else "partial"


@dataclass(frozen=True)
class Job:
    """Trials trained together (one ensemble) in one worker."""

    trial_ids: tuple[str, ...]
    configs: tuple[dict, ...]  # RunConfig.to_dict() of each (picklable for any backend)
    outs: tuple[str, ...]
    resume: bool
    analyze: bool
    threads: int | None


def _shared_key(cfg: RunConfig) -> str:
    """Trials with equal keys may train as one ensemble (trainer.shared_config)."""
    return repr(sorted((k, repr(v)) for k, v in shared_config(cfg).items()))


def plan(spec: SweepSpec, out: Path, group: int, threads: int | None) -> tuple[list[Job], dict[str, str]]:
    """The jobs still to run and every trial's status before running."""
    status = {t.id: trial_status(out / t.id, t.config) for t in spec.trials}
    jobs: list[Job] = []
    fresh: dict[str, list[Trial]] = {}
    for t in spec.trials:
        if status[t.id] == "partial":
            jobs.append(Job((t.id,), (t.config.to_dict(),), (str(out / t.id),), True, spec.analyze, threads))
        elif status[t.id] == "new":
            fresh.setdefault(_shared_key(t.config), []).append(t)
    for members in fresh.values():
        for i in range(0, len(members), group):
            chunk = members[i : i + group]
            jobs.append(Job(tuple(t.id for t in chunk), tuple(t.config.to_dict() for t in chunk),
                            tuple(str(out / t.id) for t in chunk), False, spec.analyze, threads))
    return jobs, status


def run_job(job: Job) -> list[tuple[str, str | None]]:
    """Train (and analyse) one job; returns (trial id, error line or None) per trial. Never raises."""
    import torch

    from grokscope.trainer import Trainer

    before = torch.get_num_threads()
    if job.threads:
        torch.set_num_threads(job.threads)
    try:
        cfgs = [RunConfig.from_dict(c) for c in job.configs]
        Trainer(cfgs, list(job.outs), resume=job.resume, callbacks=()).run()
        if job.analyze:
            from grokscope.analysis import analyze

            for out in job.outs:
                analyze(out)
    except Exception as err:  # one trial's failure must not stop the others: record it
        line = f"{err.__class__.__name__}: {err}".splitlines()[0] if str(err) else err.__class__.__name__
        return [(t, line) for t in job.trial_ids]
    finally:
        torch.set_num_threads(before)  # an in-process job leaves the caller's setting alone
    return [(t, None) for t in job.trial_ids]


def _write_sweep_json(spec: SweepSpec, out: Path) -> None:
    doc = {"format": FORMAT, "name": spec.name, "spec": spec.raw, "swept": list(spec.swept),
           "base": spec.base.to_dict(), "trials": [{"id": t.id, "overrides": t.overrides} for t in spec.trials]}
    path = out / "sweep.json"
    if path.exists():
        old = read_json(path)
        if not isinstance(old, dict) or old.get("trials") != doc["trials"] or old.get("base") != doc["base"]:
            raise RunDirError(f"{out} holds another sweep (its sweep.json has another base config or other trials); "
                              "choose another --out")
    atomic_write_json(path, doc)


def _local(jobs: list[Job], workers: int, on_done: Callable[[list, int], None]) -> None:
    if workers == 1:  # in this process: simplest to debug, and what one worker means
        for job in jobs:
            on_done(run_job(job), 0)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        size = {}
        for job in jobs:
            size[pool.submit(run_job, job)] = len(job.trial_ids)
        pending = set(size)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            running = sum(size[f] for f in pending if f.running())
            for f in done:
                on_done(f.result(), running)


def _ray(jobs: list[Job], address: str | None, threads: int, on_done: Callable[[list, int], None]) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend", "ray is not installed (pip install 'grokscope[ray]'; allowed: local, ray)") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    task = ray.remote(num_cpus=threads)(run_job)
    pending = [task.remote(job) for job in jobs]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            on_done(ray.get(ref), -1)  # Ray does not say which tasks run: shown as queued


def run_sweep(spec: SweepSpec | str | Path | dict, out: str | Path, backend: str = "local", workers: int | None = None,
              threads: int | None = None, group: int | None = None, address: str | None = None,
              progress: bool = True) -> dict[str, str]:
    """Run every trial not finished yet; returns {trial id: 'done' | 'failed'}.

    workers: local processes (default: the cores / threads); threads: torch threads per job
    (default 1 on CPU, which measured fastest on 2 cores: benchmarks/sweep_speed.py); group: the
    most trials per stacked ensemble (default 1 on CPU, 64 on CUDA); address: a Ray cluster
    (default: start a local Ray instance).
    """
    spec = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    if backend not in BACKENDS:
        raise ConfigError("--backend", f"must be one of {', '.join(BACKENDS)} (got {backend!r})")
    for key, value in (("--workers", workers), ("--threads", threads), ("--group", group)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(key, f"must be an integer >= 1 (got {value!r})")
    import torch

    cuda = spec.base.train.device.startswith("cuda") or (spec.base.train.device == "auto" and torch.cuda.is_available())
    threads = threads or (torch.get_num_threads() if cuda else 1)
    group = group or (64 if cuda else 1)
    workers = workers or max(1, (os.cpu_count() or 1) // threads)
    out = check_folder(out)
    if out.is_dir() and not (out / "sweep.json").is_file() and any(out.iterdir()):
        raise RunDirError(f"{out} already holds files and is not a sweep folder (no sweep.json); choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    _write_sweep_json(spec, out)
    jobs, before = plan(spec, out, group, threads)
    result = {t: "done" for t, s in before.items() if s == "done"}
    failures = out / "failures"
    counts = {"done": len(result), "failed": 0}
    bar = progress_bar(len(spec.trials), len(result), unit="trial", enabled=progress, desc=spec.name)
    log.info("sweep %s: %d trials, %d done, %d jobs to run (%s backend)", spec.name, len(spec.trials), len(result),
             len(jobs), backend)
    t0 = time.perf_counter()

    def on_done(outcome: list[tuple[str, str | None]], running: int) -> None:
        for trial_id, error in outcome:
            if error is None:
                result[trial_id] = "done"
                (failures / f"{trial_id}.txt").unlink(missing_ok=True)
            else:
                result[trial_id] = "failed"
                atomic_write_text(failures / f"{trial_id}.txt", error + "\n")
                log.warning("trial %s failed: %s", trial_id, error)
            counts["done" if error is None else "failed"] += 1
            bar.update(1)
        left = len(spec.trials) - counts["done"] - counts["failed"]
        shown = {"running": running} if running >= 0 else {"queued": left}
        bar.set_postfix(done=counts["done"], **shown, failed=counts["failed"], refresh=False)

    try:
        if backend == "local":
            _local(jobs, workers, on_done)
        else:
            _ray(jobs, address, threads, on_done)
    finally:
        bar.close()
    from grokscope.sweeps.index import write_index

    write_index(out)
    log.info("sweep %s: %d done, %d failed in %.1f s", spec.name, counts["done"], counts["failed"], time.perf_counter() - t0)
    return dict(sorted(result.items()))


def load_sweep(path: str | Path) -> dict[str, Any] | None:
    """OUT/sweep.json, or None when `path` is not a sweep folder."""
    p = Path(path) / "sweep.json"
    if not p.is_file():
        return None
    doc = read_json(p)
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None
