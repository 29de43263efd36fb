"""The training loop: one run, or an ensemble of runs trained together with stacked parameters.

Each step, in a fixed order: learning rate, forward, evaluation and checkpoint, update, log.
Step t's metrics row and checkpoint describe the parameters after t updates; the last step
(t = epochs * steps_per_epoch) is evaluated and checkpointed without an update.

Ensembles: members may differ in train.seed, task.data_seed, optim.lr, optim.weight_decay and
name; everything else must match (shapes and schedules are shared). Each member writes its own
ordinary run directory, and its numbers match training it alone, up to float rounding.

Resume is exact: the state at a checkpoint step holds the parameters and AdamW moments, the
data order is a pure function of (train.seed, epoch), and metrics rows after the state's step
are recomputed; on CPU a resumed run is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

import grokscope
from grokscope.config import ConfigError, RunConfig
from grokscope.cpu import flush_denormals, keep_freed_memory
from grokscope.engine import select_engine
from grokscope.io import RunDirError
from grokscope.loss import masked_cross_entropy
from grokscope.models import make_model
from grokscope.optim import FlatAdamW, ParamLayout, lr_at
from grokscope.runstore import CorruptFileError, RunStore, step_name
from grokscope.tasks import make_task

log = logging.getLogger(__name__)

# Keys in which ensemble members may differ; all others must be equal.
MEMBER_KEYS = ("name", "train.seed", "task.data_seed", "optim.lr", "optim.weight_decay")


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss with on_nonfinite=stop, say); the run directory stays consistent."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("train.device", f"{name!r} asked for, but CUDA is not available (allowed here: auto, cpu)")
    return torch.device(name)


def schedule(total: int, every: int, log_spaced: bool, base: float) -> set[int]:
    """Steps 0, every, 2*every, ..., total, plus (if log_spaced) round(base**k) below `every`."""
    steps = set(range(0, total + 1, every)) | {total}
    if log_spaced:
        k = 0.0
        while base**k < min(every, total):
            steps.add(int(round(base**k)))
            k += 1
    return steps


def default_out(cfg: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.task.op}{cfg.task.p}-seed{cfg.train.seed}-{stamp}"


def _flatten_keys(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten_keys(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def check_ensemble(cfgs: Sequence[RunConfig]) -> None:
    first = _flatten_keys(cfgs[0].to_dict())
    for i, cfg in enumerate(cfgs[1:], start=1):
        for key, value in _flatten_keys(cfg.to_dict()).items():
            if key not in MEMBER_KEYS and value != first[key]:
                raise ConfigError(key, f"ensemble members must share it (member 0: {first[key]!r}, member {i}: {value!r}); "
                                  f"members may differ only in {', '.join(MEMBER_KEYS)}")


@dataclass
class TrainState:
    """What callbacks see: the explicit state of the loop at one step."""

    step: int
    epoch: int
    params: dict[str, Tensor]  # {name: [member, *shape]} views of the flat buffer
    lr: Tensor  # [member] learning rate used at this step
    row: dict | None = None  # metrics of member 0 at an evaluation step
    rows: list[dict] = field(default_factory=list)  # metrics of every member at an evaluation step


class Callback:
    """Override any of these; the trainer calls them with the explicit state. Return values are ignored."""

    def on_step_start(self, state: TrainState) -> None: ...
    def on_eval(self, state: TrainState) -> None: ...
    def on_checkpoint(self, state: TrainState) -> None: ...
    def on_end(self, state: TrainState) -> None: ...


def _start_leftover(name: str) -> bool:
    """What a start killed before config.json leaves (no run yet): a fresh train may take the directory over."""
    return name in (".lock", "split.json") or (name.endswith(".tmp") and name.startswith((".split.json.", ".config.json.")))


def _check_state(path: Path, tensors: dict, meta: dict, layout: ParamLayout, dtype: torch.dtype) -> None:
    """A state file that passes its sha256 but does not fit this model is as unusable as a damaged one."""
    for key in ("param", "exp_avg", "exp_avg_sq"):
        for name, shape in zip(layout.names, layout.shapes):
            t = tensors.get(f"{key}.{name}")
            if t is None or tuple(t.shape) != shape or t.dtype != dtype:
                raise CorruptFileError(f"{path} does not hold {key}.{name} as {dtype} {list(shape)}")
    if not str(meta.get("adam_t", "")).isdigit():
        raise CorruptFileError(f"{path} has no valid adam_t in its metadata")


def _padded(index_lists: list[np.ndarray]) -> tuple[Tensor, Tensor]:
    """Stack per-member index arrays of unequal length: [member, n_max] indices and a 0/1 weight mask."""
    n = max(len(a) for a in index_lists)
    idx = np.zeros((len(index_lists), n), dtype=np.int64)
    mask = np.zeros((len(index_lists), n), dtype=bool)
    for i, a in enumerate(index_lists):
        idx[i, : len(a)] = a
        idx[i, len(a) :] = a[0] if len(a) else 0
        mask[i, : len(a)] = True
    return torch.from_numpy(idx), torch.from_numpy(mask)


class Trainer:
    """Trains `cfgs` (one per member) into `outs` (one run directory per member)."""

    def __init__(self, cfgs: Sequence[RunConfig], outs: Sequence[str | Path], resume: bool = False,
                 callbacks: Sequence[Callback] = ()) -> None:
        if len(cfgs) != len(outs) or not cfgs:
            raise ValueError("need one output directory per config")
        check_ensemble(cfgs)
        self.cfgs, self.callbacks = list(cfgs), list(callbacks)
        cfg = self.cfgs[0]
        self.device = resolve_device(cfg.train.device)
        self.stores = [RunStore(o) for o in outs]
        self.n_members = len(cfgs)
        # Everything that can fail on bad input is checked before the first byte is written.
        self.tasks = [make_task(c.task) for c in self.cfgs]
        task0 = self.tasks[0]
        self.model = make_model(cfg, task0).to(self.device)
        self.engine = select_engine(cfg, task0, self.model)
        self._prepare_dirs(resume)
        inits = [dict(make_model(c, t).named_parameters()) for c, t in zip(self.cfgs, self.tasks)]
        self.layout = ParamLayout.from_params(inits[0])
        flat = torch.stack([self.layout.flatten({k: v.detach() for k, v in p.items()}) for p in inits])
        self.flat = flat.to(self.device).requires_grad_(True)
        self.opt = FlatAdamW(self.flat, cfg.optim.betas, cfg.optim.eps)
        # float64 so the logged lr is the configured number; cast to the parameters' dtype for the update
        self.lr = torch.tensor([c.optim.lr for c in self.cfgs], device=self.device, dtype=torch.float64)[:, None]
        self.wd = torch.tensor([c.optim.weight_decay for c in self.cfgs], device=self.device, dtype=self.flat.dtype)[:, None]
        self.loss_dtype = torch.float64 if cfg.train.loss_dtype == "float64" else torch.float32
        self._data()
        self.rows: list[list[dict]] = [[] for _ in self.cfgs]
        self.start_step = 0
        try:
            self._restore() if resume else self._write_headers()
        except BaseException:  # disk full, damaged metrics: leave no lock held in this process
            for store in self.stores:
                store.release_lock()
            raise

    # -- set-up ---------------------------------------------------------------------------------
    def _prepare_dirs(self, resume: bool) -> None:
        for store in self.stores:
            if resume:
                if not store.exists():
                    raise RunDirError(f"cannot resume {store.path}: it holds no run (no config.json)")
            elif store.path.is_dir() and any(not _start_leftover(p.name) for p in store.path.iterdir()):
                raise RunDirError(f"{store.path} already holds files; use --resume to continue it, or choose another --out")
        locked = []
        try:
            for store in self.stores:
                store.acquire_lock()
                locked.append(store)
        except RunDirError:
            for store in locked:
                store.release_lock()
            raise
        if resume:
            try:
                for store, cfg, task in zip(self.stores, self.cfgs, self.tasks):
                    stored, _ = store.read_config()
                    if stored != cfg.to_dict():
                        raise ConfigError("--resume", f"the config differs from the one stored in {store.config_path}")
                    split = store.read_split()
                    if split["train"] != task.train_idx.tolist() or split["test"] != task.test_idx.tolist():
                        raise RunDirError(f"{store.split_path} does not match the split its config produces")
            except (ConfigError, RunDirError):
                for store in self.stores:
                    store.release_lock()
                raise


    def _write_headers(self) -> None:
        meta = {
            "grokscope_version": grokscope.__version__, "torch_version": torch.__version__,
            "engine": self.engine.name, "device": str(self.device), "created": datetime.now().isoformat(timespec="seconds"),
            "ensemble_size": self.n_members, "cpu_flush_denormals": self.device.type == "cpu",
        }
        for store, cfg, task in zip(self.stores, self.cfgs, self.tasks):
            store.write_split(task.split_dict())
            store.write_config(cfg.to_dict(), meta)  # written last: its presence marks a run

    def _data(self) -> None:
        tasks, dev = self.tasks, self.device
        tr_idx, self.train_mask = _padded([t.train_idx for t in tasks])
        te_idx, self.test_mask = _padded([t.test_idx for t in tasks])
        self.train_tokens = torch.stack([tasks[i].tokens(tr_idx[i]) for i in range(len(tasks))]).to(dev)
        self.train_labels = torch.stack([tasks[i].labels(tr_idx[i]) for i in range(len(tasks))]).to(dev)
        self.test_tokens = torch.stack([tasks[i].tokens(te_idx[i]) for i in range(len(tasks))]).to(dev)
        self.test_labels = torch.stack([tasks[i].labels(te_idx[i]) for i in range(len(tasks))]).to(dev)
        self.train_mask, self.test_mask = self.train_mask.to(dev), self.test_mask.to(dev)
        self.n_train = int(self.train_mask.sum(1).max())
        bs = self.cfgs[0].train.batch_size
        self.full_batch = bs is None or bs >= self.n_train
        self.steps_per_epoch = 1 if self.full_batch else math.ceil(self.n_train / bs)
        tc = self.cfgs[0].train
        self.total_steps = tc.epochs * self.steps_per_epoch
        self.eval_steps = schedule(self.total_steps, tc.eval_every, tc.log_spaced, 1.25)
        self.ckpt_steps = schedule(self.total_steps, tc.checkpoint_every, tc.log_spaced, 2.0)

    def _restore(self) -> None:
        """Load the newest step at which every member has a valid state (falling back past damaged files)."""
        candidates = sorted(set.intersection(*(set(s.state_steps()) for s in self.stores)), reverse=True)
        for step in candidates:
            try:
                loaded = [s.load_state(step) for s in self.stores]
                for s, (tensors, meta) in zip(self.stores, loaded):
                    _check_state(s.state_dir / step_name(step), tensors, meta, self.layout, self.flat.dtype)
            except CorruptFileError as err:
                log.warning("skipping damaged state: %s", err)
                continue
            with torch.no_grad():
                for i, (tensors, meta) in enumerate(loaded):
                    for key, buf in (("param", self.flat), ("exp_avg", self.opt.exp_avg), ("exp_avg_sq", self.opt.exp_avg_sq)):
                        buf[i].copy_(self.layout.flatten({n: tensors[f"{key}.{n}"] for n in self.layout.names}))
            self.opt.t = int(loaded[0][1]["adam_t"])
            for i, store in enumerate(self.stores):
                metrics = store.load_metrics()
                self.rows[i] = [r for r in metrics.to_dict("records") if r["step"] < step]
                if [r["step"] for r in self.rows[i]] != sorted(s for s in self.eval_steps if s < step):
                    raise CorruptFileError(f"{store.metrics_path} lacks rows before step {step}, the step of the newest usable state")
            self.start_step = step
            log.info("resuming %s from step %d", self.stores[0].path, step)
            return
        log.info("no usable state found; starting %s from step 0", self.stores[0].path)

    # -- one step -------------------------------------------------------------------------------
    def _batch(self, step: int) -> tuple[Tensor, Tensor, Tensor]:
        if self.full_batch:
            return self.train_tokens, self.train_labels, self.train_mask
        epoch, b = divmod(step, self.steps_per_epoch)
        bs = self.cfgs[0].train.batch_size
        order = torch.stack([
            torch.from_numpy(np.random.default_rng([c.train.seed, epoch]).permutation(self.n_train)) for c in self.cfgs
        ]).to(self.device)
        sel = order[:, b * bs : (b + 1) * bs]
        pick = lambda t: torch.gather(t, 1, sel if t.dim() == 2 else sel[..., None].expand(-1, -1, t.shape[-1]))  # noqa: E731
        return pick(self.train_tokens), pick(self.train_labels), pick(self.train_mask)

    def _loss(self, logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        """Per-member mean cross-entropy at the answer position, computed in loss_dtype: [member]."""
        return masked_cross_entropy(logits, labels, mask, self.loss_dtype)

    def _gradient(self, params: dict[str, Tensor], tokens: Tensor, labels: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One forward and backward: (logits, per-member loss, gradient of the flat parameters)."""
        logits = self.engine.logits(params, tokens)
        loss = self._loss(logits, labels, mask)
        (grad,) = torch.autograd.grad(loss.sum(), self.flat)
        return logits, loss, grad

    @staticmethod
    def _accuracy(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        """Per-member accuracy [member]; only evaluation steps need it."""
        hit = (logits.argmax(-1) == labels) & mask
        return hit.sum(-1).double() / mask.sum(-1).double()

    @torch.no_grad()
    def _evaluate(self, tokens: Tensor, labels: Tensor, mask: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        logits = self.engine.logits(params, tokens)
        return self._loss(logits, labels, mask), self._accuracy(logits, labels, mask)

    def run(self) -> list[Path]:
        tc = self.cfgs[0].train
        bar = progress_bar(self.total_steps, self.start_step, enabled=tc.progress)
        t0 = time.perf_counter()
        try:
            with contextlib.ExitStack() as cpu:
                if self.device.type == "cpu":  # see grokscope.cpu: 2x faster steps once the run has memorised
                    keep_freed_memory()
                    cpu.enter_context(flush_denormals())
                state = self._loop(bar)
        finally:
            bar.close()
            for store in self.stores:
                store.release_lock()
        log.info("trained %d steps in %.1f s", self.total_steps - self.start_step, time.perf_counter() - t0)
        for cb in self.callbacks:
            cb.on_end(state)
        return [s.path for s in self.stores]

    def _loop(self, bar) -> TrainState:
        """Steps start_step .. total_steps; returns the last step's state."""
        for step in range(self.start_step, self.total_steps + 1):
            lr = lr_at(step, 1.0, self.cfgs[0].optim.warmup_steps) * self.lr
            params = self.layout.views(self.flat)
            state = TrainState(step, step // self.steps_per_epoch, params, lr[:, 0])
            for cb in self.callbacks:
                cb.on_step_start(state)
            if self.callbacks:  # fresh views: autograd refuses split() views written in place by a callback
                params = state.params = self.layout.views(self.flat)
            training = step < self.total_steps
            if training:
                tokens, labels, mask = self._batch(step)
                logits, loss, grad = self._gradient(params, tokens, labels, mask)
                # one float64 sum per member: NaN / inf anywhere makes it non-finite, and float32 values
                # cannot overflow a float64 sum (one pass instead of isfinite's three)
                active = torch.isfinite(loss) & torch.isfinite(grad.sum(dim=1, dtype=torch.float64))
                if not bool(active.all()):  # before anything is written: a NaN never reaches a checkpoint
                    self._nonfinite(step, active)
            if step in self.eval_steps:
                reuse = training and self.full_batch  # this step's forward already measured the training set
                self._log_row(state, loss.detach() if reuse else None,
                              self._accuracy(logits.detach(), labels, mask) if reuse else None)
                bar.set_postfix(train_acc=f"{state.row['train_acc']:.3f}", test_acc=f"{state.row['test_acc']:.3f}", refresh=False)
            if step in self.ckpt_steps:
                self._checkpoint(state)
            if not training:
                break
            self.opt.step(self.flat, grad, state.lr[:, None].to(self.flat.dtype), self.wd, None if bool(active.all()) else active)
            bar.update(1)
        return state

    def _log_row(self, state: TrainState, train_loss: Tensor | None, train_acc: Tensor | None) -> None:
        if train_loss is None:  # minibatch (or the final step): measure the whole training set
            train_loss, train_acc = self._evaluate(self.train_tokens, self.train_labels, self.train_mask, state.params)
        test_loss, test_acc = self._evaluate(self.test_tokens, self.test_labels, self.test_mask, state.params)
        values = torch.stack([train_loss.double(), train_acc.double(), test_loss.double(), test_acc.double(), state.lr.double()]).cpu().tolist()
        for i in range(self.n_members):
            row = {"step": state.step, "epoch": state.epoch, "train_loss": values[0][i], "train_acc": values[1][i],
                   "test_loss": values[2][i], "test_acc": values[3][i], "lr": values[4][i]}
            self.rows[i].append(row)
            state.rows.append(row)
        state.row = state.rows[0]
        for cb in self.callbacks:
            cb.on_eval(state)

    def _checkpoint(self, state: TrainState) -> None:
        """Checkpoint, metrics, then resumable state: a kill between them loses nothing but time."""
        finite = torch.isfinite(self.flat.detach()).all(dim=1)
        if not bool(finite.all()):  # e.g. the last update overflowed: no checkpoint ever holds a NaN
            self._nonfinite(state.step, finite)
        flat = self.flat.detach().cpu()
        m, v = self.opt.exp_avg.cpu(), self.opt.exp_avg_sq.cpu()
        for i, store in enumerate(self.stores):
            params = {k: t[0] for k, t in self.layout.views(flat[i : i + 1]).items()}
            if state.step > self.start_step or state.step not in store.checkpoint_steps():  # list the folder only on resume
                store.save_checkpoint(state.step, params)
            store.save_metrics(self.rows[i])
            tensors = {f"param.{k}": t for k, t in params.items()}
            tensors.update({f"exp_avg.{k}": t[0] for k, t in self.layout.views(m[i : i + 1]).items()})
            tensors.update({f"exp_avg_sq.{k}": t[0] for k, t in self.layout.views(v[i : i + 1]).items()})
            store.save_state(state.step, tensors, {"adam_t": str(self.opt.t)})
        for cb in self.callbacks:
            cb.on_checkpoint(state)

    def _nonfinite(self, step: int, active: Tensor) -> None:
        bad = [str(self.stores[i].path) for i in range(self.n_members) if not bool(active[i])]
        weights = not bool(torch.isfinite(self.flat.detach()).all())  # skipping cannot repair the weights
        if weights or self.cfgs[0].train.on_nonfinite == "stop":
            last = max((s for s in self.ckpt_steps if s < step), default=None)
            raise TrainingError(f"non-finite {'weights' if weights else 'loss'} at step {step} in {', '.join(bad)}; stopped. "
                                + (f"The last good checkpoint is step {last}" if last is not None else "No checkpoint was written")
                                + ("" if weights else "; set train.on_nonfinite=skip to skip such steps instead"))
        log.warning("non-finite loss at step %d in %s: step skipped", step, ", ".join(bad))


def progress_bar(total: int | None, initial: int = 0, unit: str = "step", enabled: bool = True, desc: str | None = None):
    """A tqdm bar on stderr, silent unless `enabled` and stderr is a terminal (logs and CI stay clean)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not (enabled and sys.stderr.isatty()), unit=unit, desc=desc,
                dynamic_ncols=True, mininterval=0.5)


def train(cfg: RunConfig, out: str | Path | None = None, resume: bool = False, callbacks: Sequence[Callback] = ()) -> Path:
    """Train one run into `out` (default runs/<op><p>-seed<seed>-<time>); returns the run directory."""
    out = Path(out) if out is not None else default_out(cfg)
    return Trainer([cfg], [out], resume=resume, callbacks=callbacks).run()[0]


def train_ensemble(cfgs: Sequence[RunConfig], outs: Sequence[str | Path], resume: bool = False,
                   callbacks: Sequence[Callback] = ()) -> list[Path]:
    """Train several runs at once with stacked parameters; each member writes its own run directory."""
    return Trainer(cfgs, outs, resume=resume, callbacks=callbacks).run()
