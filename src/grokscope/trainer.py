"""The training loop: one run, or an ensemble of runs trained together with stacked parameters.

Each step, in a fixed order: learning rate, forward, evaluation and checkpoint, update, log.
Step t's metrics row and checkpoint describe the parameters after t updates; the last step
(t = epochs * steps_per_epoch) is evaluated and checkpointed without an update.

Ensembles: members may differ in train.seed, task.data_seed, optim.lr, optim.weight_decay and
name; everything else must match (shapes and schedules are shared). Each member writes its own
ordinary run directory, and its numbers match training it alone, up to float rounding.

Resume is exact: the state at a checkpoint step holds the parameters, the AdamW moments and the
callbacks' state, the data order is a pure function of (train.seed, epoch), and metrics rows
after the state's step are recomputed; on CPU a resumed run is bit-identical to an uninterrupted
one. What a run directory holds and how it is locked is grokscope.runstore's business.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from grokscope import determinism
from grokscope._version import __version__
from grokscope.callbacks import Callback, TrainContext, TrainState
from grokscope.config import ConfigError, RunConfig, flatten_dict
from grokscope.cpu import flush_denormals, keep_freed_memory, numerics, settle_vector_math
from grokscope.engine import select_engine
from grokscope.interventions import build_interventions
from grokscope.io import progress_bar
from grokscope.loggers import MetricsLogger, check_backend
from grokscope.loss import log_probs, loss_dtype, masked_loss
from grokscope.models import make_model
from grokscope.optim import ParamLayout, lr_at, make_optimizer
from grokscope.runstore import (CorruptFileError, RunStore, check_outs, latest_state, open_for_training, release_all,
                                write_headers)
from grokscope.tasks import NO_TARGET, Batch, components_of, is_infinite, make_task

log = logging.getLogger(__name__)

# Keys in which ensemble members may differ; all others must be equal.
MEMBER_KEYS = ("name", "train.seed", "task.data_seed", "optim.lr", "optim.weight_decay")
# Members per process: one open lock file and run directory each; far beyond what a GPU stacks usefully
MAX_ENSEMBLE = 1024


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
    label = cfg.task.label() if hasattr(cfg.task, "label") else cfg.task.name  # label() is optional for a family
    return Path("runs") / f"{label}-seed{cfg.train.seed}-{stamp}"


def shared_config(cfg: RunConfig) -> dict:
    """What ensemble members must share: the flattened config without MEMBER_KEYS."""
    return {k: v for k, v in flatten_dict(cfg.to_dict()).items() if k not in MEMBER_KEYS}


def check_ensemble_size(n: int, key: str = "ensemble", what: str = "members", instead: str = "grokscope.sweep") -> None:
    """At most MAX_ENSEMBLE members per process; the CLI names its flag (`--seeds`) and verb."""
    if n > MAX_ENSEMBLE:
        raise ConfigError(key, f"at most {MAX_ENSEMBLE} {what} in one process (got {n}); train more as a sweep ({instead})")


def _check_type(cfg: Any) -> None:
    if not isinstance(cfg, RunConfig):
        raise ConfigError("cfg", f"must be a RunConfig (grokscope.get_preset, make_config or RunConfig.from_dict; "
                          f"got {type(cfg).__name__})")


def check_ensemble(cfgs: Sequence[RunConfig], outs: Sequence[str | Path]) -> None:
    """Configs that can train together, one output folder each."""
    for cfg in cfgs:
        _check_type(cfg)
    if len(cfgs) != len(outs) or not cfgs:
        raise ConfigError("outs", f"need one output directory per config (got {len(cfgs)} configs, {len(outs)} directories)")
    check_ensemble_size(len(cfgs))
    first = shared_config(cfgs[0])
    for i, cfg in enumerate(cfgs[1:], start=1):
        for key, value in shared_config(cfg).items():
            if value != first.get(key):
                raise ConfigError(key, f"ensemble members must share it (member 0: {first.get(key)!r}, member {i}: {value!r}); "
                                  f"members may differ only in {', '.join(MEMBER_KEYS)}")


def available_memory(device: torch.device) -> int | None:
    """Bytes free for this process on `device` (MemAvailable on Linux CPUs, the CUDA allocator's view), or None."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def estimate_bytes(cfg: RunConfig, members: int) -> int:
    """A lower bound on training memory: four float32 copies of the parameters (weights, gradient,
    two AdamW moments) and the batch's activations (the model family's `activation_floats` per
    example: the generic engine's forward and backward), per member."""
    shape = cfg.task.shape()
    batch = cfg.train.batch_size or shape.n_train
    batch = batch if shape.n_train is None else min(batch, shape.n_train)
    m = cfg.model
    return members * 4 * (4 * m.n_params(shape) + batch * m.activation_floats(shape))


def check_memory(cfg: RunConfig, members: int, device: torch.device) -> None:
    """Refuse, with one line naming the config, a run that cannot fit: better than the kernel's OOM kill."""
    need, free = estimate_bytes(cfg, members), available_memory(device)
    if free is not None and need > free:
        key = cfg.model.size_key() if members == 1 else "ensemble"
        raise ConfigError(key, f"training needs at least ~{need / 2**30:.1f} GiB ({members} member(s)), but "
                          f"{free / 2**30:.1f} GiB are free on {device}; reduce model.d_model, model.d_mlp, "
                          "train.batch_size or the number of seeds")


def _check_state(path: Path, tensors: dict, meta: dict, layout: ParamLayout, dtype: torch.dtype) -> None:
    """A state file that passes its sha256 but does not fit this model is as unusable as a damaged one."""
    for key in ("param", "exp_avg", "exp_avg_sq"):
        for name, shape in zip(layout.names, layout.shapes):
            t = tensors.get(f"{key}.{name}")
            if t is None or tuple(t.shape) != shape or t.dtype != dtype:
                raise CorruptFileError(f"{path} does not hold {key}.{name} as {dtype} {list(shape)}")
    if not str(meta.get("adam_t", "")).isdigit():
        raise CorruptFileError(f"{path} has no valid adam_t in its metadata")


def _stack(batches: list[Batch]) -> Batch:
    """Stack per-member batches of unequal length: [member, n_max, ...], padded rows masked out."""
    n = max(len(b) for b in batches)

    def pad(t: Tensor) -> Tensor:
        if len(t) == n:
            return t
        fill = t[:1].expand(n - len(t), *t.shape[1:]) if len(t) else t.new_zeros(n, *t.shape[1:])
        return torch.cat([t, fill])

    mask = torch.stack([torch.cat([b.mask, b.mask.new_zeros(n - len(b))]) for b in batches])
    comps = None if batches[0].components is None else torch.stack([pad(b.components) for b in batches])
    return Batch(torch.stack([pad(b.inputs) for b in batches]), torch.stack([pad(b.targets) for b in batches]), mask, comps)


def _prepare(cfgs: Sequence[RunConfig]):
    """The checks and objects a start needs before it writes anything: (device, tasks, model, engine)."""
    cfg = cfgs[0]
    device = resolve_device(cfg.train.device)
    if cfg.train.deterministic:  # before anything runs a matrix product
        determinism.enable(device)
    check_memory(cfg, len(cfgs), device)
    check_backend(cfg.train.log)
    tasks = [make_task(c.task) for c in cfgs]
    model = make_model(cfg, tasks[0])
    return device, tasks, model, select_engine(cfg, tasks[0], model)


def plan(cfgs: Sequence[RunConfig], outs: Sequence[str | Path], resume: bool = False, overwrite: bool = False) -> dict:
    """What training `cfgs` into `outs` would do, checked as a real start checks it; nothing is written.
    `grokscope train --dry-run` prints it: a config, its memory and its folder checked before a long job."""
    check_ensemble(cfgs, outs)
    device, tasks, model, engine = _prepare(cfgs)
    check_outs([RunStore(o) for o in outs], resume, overwrite)
    cfg, tc = cfgs[0], cfgs[0].train
    total = cfg.total_steps()
    title = cfg.task.title() if hasattr(cfg.task, "title") else cfg.task.name
    return {"runs": [str(o) for o in outs], "config": repr(cfg), "task": title,
            "n_train": tasks[0].n_train, "n_test": tasks[0].n_test,
            "n_params": sum(p.numel() for p in model.parameters()), "engine": engine.name, "device": str(device),
            "steps": total, "checkpoints": len(schedule(total, tc.checkpoint_every, tc.log_spaced, 2.0)),
            "memory_bytes": estimate_bytes(cfg, len(cfgs)), "free_bytes": available_memory(device)}


class Trainer:
    """Trains `cfgs` (one per member) into `outs` (one run directory per member).

    `callbacks` run after the config's interventions (grokscope.interventions), in the order given.
    """

    def __init__(self, cfgs: Sequence[RunConfig], outs: Sequence[str | Path], resume: bool = False,
                 callbacks: Sequence[Callback] = (), overwrite: bool = False) -> None:
        check_ensemble(cfgs, outs)
        self.cfgs = list(cfgs)
        cfg = self.cfgs[0]
        self.callbacks = [*build_interventions(cfg.interventions), *callbacks]
        keys = [cb.state_key for cb in self.callbacks if cb.state_key is not None]
        if len(set(keys)) != len(keys):
            raise ValueError(f"callbacks need distinct state_key values (got {keys})")
        # Everything that can fail on bad input is checked before the first byte is written.
        self.device, self.tasks, model, self.engine = _prepare(self.cfgs)
        self.model = model.to(self.device)
        self.stores = [RunStore(o) for o in outs]
        self.n_members = len(cfgs)
        task0 = self.tasks[0]
        self._configs = [c.to_dict() for c in self.cfgs]
        self._splits = [t.split_dict() for t in self.tasks]
        open_for_training(self.stores, self._configs, self._splits, resume, overwrite)
        try:
            inits = [dict(make_model(c, t).named_parameters()) for c, t in zip(self.cfgs, self.tasks)]
            self.layout = ParamLayout.from_params(inits[0])
            flat = torch.stack([self.layout.flatten({k: v.detach() for k, v in p.items()}) for p in inits])
            self.flat = flat.to(self.device).requires_grad_(True)
            self.opt = make_optimizer(cfg.optim, self.flat, self.layout)
            # float64 so the logged lr is the configured number; cast to the parameters' dtype for the update
            self.lr = torch.tensor([c.optim.lr for c in self.cfgs], device=self.device, dtype=torch.float64)[:, None]
            self.wd = torch.tensor([c.optim.weight_decay for c in self.cfgs], device=self.device, dtype=self.flat.dtype)[:, None]
            self.loss_dtype = loss_dtype(cfg.train.loss_dtype)
            self._data()
            context = TrainContext(self.cfgs, self.tasks, self.device, self.engine.logits,
                                   lambda: self.layout.views(self.flat), self.flat)
            for cb in self.callbacks:
                cb.bind(context)
            self.rows: list[list[dict]] = [[] for _ in self.cfgs]
            self.start_step = 0
            self._callback_state: list[dict[str, Tensor]] = []
            self._restore() if resume else write_headers(self.stores, self._configs, self._splits, self._meta())
            if cfg.train.log != "none":  # after the headers: a logger writes into the run directories
                self.callbacks.append(MetricsLogger(cfg.train.log, outs, self._configs))
        except BaseException:  # disk full, damaged metrics: leave no lock held in this process
            release_all(self.stores)
            raise

    # -- set-up ---------------------------------------------------------------------------------
    def _meta(self) -> dict:
        return {
            "grokscope_version": __version__, "torch_version": torch.__version__,
            "engine": self.engine.name, "device": str(self.device), "created": datetime.now().isoformat(timespec="seconds"),
            "ensemble_size": self.n_members, "cpu_flush_denormals": self.device.type == "cpu",
            "numerics": numerics(self.device),
        }

    def _data(self) -> None:
        """The training and test sets on the device. With infinite data "train" is a fixed evaluation
        sample and every step draws its own batch (`_batch`)."""
        self.train = _stack([t.batch("train") for t in self.tasks]).to(self.device)
        self.test = _stack([t.batch("test") for t in self.tasks]).to(self.device)
        self.components = components_of(self.tasks[0])
        self.infinite = is_infinite(self.tasks[0])
        self.n_train = int(self.train.mask.sum(1).max())
        bs = self.cfgs[0].train.batch_size
        self.full_batch = not self.infinite and (bs is None or bs >= self.n_train)
        self.steps_per_epoch = 1 if self.full_batch or self.infinite else math.ceil(self.n_train / bs)
        tc = self.cfgs[0].train
        self.total_steps = tc.epochs * self.steps_per_epoch
        self.eval_steps = schedule(self.total_steps, tc.eval_every, tc.log_spaced, 1.25)
        self.ckpt_steps = schedule(self.total_steps, tc.checkpoint_every, tc.log_spaced, 2.0)

    def _restore(self) -> None:
        """Load the newest step at which every member has a valid state (falling back past damaged files)."""
        found = latest_state(self.stores, lambda path, t, meta: _check_state(path, t, meta, self.layout, self.flat.dtype))
        if found is None:
            log.info("no usable state found; starting %s from step 0", self.stores[0].path)
            return
        step, loaded = found
        with torch.no_grad():
            for i, (tensors, meta) in enumerate(loaded):
                for key, buf in (("param", self.flat), ("exp_avg", self.opt.exp_avg), ("exp_avg_sq", self.opt.exp_avg_sq)):
                    buf[i].copy_(self.layout.flatten({n: tensors[f"{key}.{n}"] for n in self.layout.names}))
        self.opt.t = int(loaded[0][1]["adam_t"])
        for cb in self.callbacks:
            if cb.state_key is not None:
                prefix = f"callback.{cb.state_key}."
                names = [k[len(prefix):] for k in loaded[0][0] if k.startswith(prefix)]
                cb.load_state_dict({n: torch.stack([t[prefix + n] for t, _ in loaded]).to(self.device) for n in names})
        for i, store in enumerate(self.stores):
            self.rows[i] = store.rows_before(step, [s for s in self.eval_steps if s < step])
        self.start_step = step
        log.info("resuming %s from step %d", self.stores[0].path, step)

    # -- one step -------------------------------------------------------------------------------
    def _batch(self, step: int) -> Batch:
        if self.full_batch:
            return self.train
        bs = self.cfgs[0].train.batch_size
        if self.infinite:  # fresh examples: a pure function of (task.data_seed, train.seed, step)
            return _stack([t.sample(step, bs, c.train.seed) for t, c in zip(self.tasks, self.cfgs)]).to(self.device)
        epoch, b = divmod(step, self.steps_per_epoch)
        order = torch.stack([
            torch.from_numpy(np.random.default_rng([c.train.seed, epoch]).permutation(self.n_train)) for c in self.cfgs
        ]).to(self.device)
        sel = order[:, b * bs : (b + 1) * bs]

        def pick(t: Tensor) -> Tensor:
            return torch.gather(t, 1, sel if t.dim() == 2 else sel[..., None].expand(-1, -1, t.shape[-1]))

        comps = None if self.train.components is None else pick(self.train.components)
        return Batch(pick(self.train.inputs), pick(self.train.targets), pick(self.train.mask), comps)

    def _loss(self, logits: Tensor, batch: Batch) -> Tensor:
        """Per-member mean cross-entropy (train.loss: over softmax or StableMax) over every target of the
        real examples, in loss_dtype: [member].

        logits [member batch n_target vocab]; the target positions fold into the batch dimension, and a
        NO_TARGET label counts nowhere.
        """
        valid = batch.valid().flatten(1, 2)
        labels = batch.targets.flatten(1, 2).clamp_min(0)  # NO_TARGET rows are masked; any class index will do
        return masked_loss(logits.flatten(1, 2), labels, valid, self.loss_dtype, self.cfgs[0].train.loss)

    def _gradient(self, params: dict[str, Tensor], batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """One forward and backward: (logits, per-member loss, gradient of the flat parameters)."""
        logits = self.engine.logits(params, batch.inputs)
        loss = self._loss(logits, batch)
        (grad,) = torch.autograd.grad(loss.sum(), self.flat)
        return logits, loss, grad

    @staticmethod
    def _accuracy(logits: Tensor, batch: Batch) -> Tensor:
        """Per-member accuracy [member]: the share of real examples with every target right."""
        hit = ((logits.argmax(-1) == batch.targets) | (batch.targets == NO_TARGET)).all(-1) & batch.mask
        return hit.sum(-1).double() / batch.mask.sum(-1).double()

    def _by_component(self, logits: Tensor, batch: Batch) -> tuple[Tensor, Tensor]:
        """Per-member, per-component mean loss and accuracy over the component's targets: two [member, C].

        A component's accuracy is the share of its targets predicted right (not of whole examples)."""
        m, n_comp = logits.shape[0], len(self.components)
        valid = batch.valid()
        labels = batch.targets.clamp_min(0)
        ce = -log_probs(logits.to(self.loss_dtype), self.cfgs[0].train.loss).gather(-1, labels[..., None])[..., 0]  # [m B T]
        hit = (logits.argmax(-1) == labels).to(self.loss_dtype)
        w = valid.to(self.loss_dtype)
        comp = batch.components.flatten(1)
        sums = torch.zeros(3, m, n_comp, dtype=self.loss_dtype, device=logits.device)
        for i, value in enumerate((ce * w, hit * w, w)):
            sums[i].scatter_add_(1, comp, value.flatten(1))
        count = sums[2].clamp_min(1)
        return sums[0] / count, sums[1] / count

    @torch.no_grad()
    def _evaluate(self, batch: Batch, params: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """(loss [member], accuracy [member], logits) on a whole split."""
        logits = self.engine.logits(params, batch.inputs)
        return self._loss(logits, batch), self._accuracy(logits, batch), logits

    def run(self) -> list[Path]:
        tc = self.cfgs[0].train
        bar = progress_bar(self.total_steps, self.start_step, enabled=tc.progress)
        t0 = time.perf_counter()
        try:
            with contextlib.ExitStack() as cpu:
                if self.device.type == "cpu":  # see grokscope.cpu: 2x faster steps once the run has memorised
                    keep_freed_memory()
                    settle_vector_math()  # the same numbers in every process (grokscope.cpu)
                    cpu.enter_context(flush_denormals())
                state = self._loop(bar)
        finally:
            bar.close()
            release_all(self.stores)
        log.info("trained %d steps in %.1f s", state.step - self.start_step, time.perf_counter() - t0)
        for cb in self.callbacks:
            cb.on_end(state)
        return [s.path for s in self.stores]

    def _loop(self, bar) -> TrainState:
        """Steps start_step .. total_steps; returns the last step's state."""
        stop_at = self.cfgs[0].train.stop_at_test_acc
        for step in range(self.start_step, self.total_steps + 1):
            stop = False  # an early stop checkpoints this step, so its callback state is taken too
            if step in self.ckpt_steps or (stop_at is not None and step in self.eval_steps):
                self._callback_state = self._snapshot_callbacks()  # as before this step's events (callbacks.py)
            lr = lr_at(step, 1.0, self.cfgs[0].optim.warmup_steps) * self.lr
            params = self.layout.views(self.flat)
            state = TrainState(step, step // self.steps_per_epoch, params, lr[:, 0])
            for cb in self.callbacks:
                cb.on_step_start(state)
            if self.callbacks:  # fresh views: autograd refuses split() views written in place by a callback
                params = state.params = self.layout.views(self.flat)
            training = step < self.total_steps
            if training:
                batch = self._batch(step)
                logits, loss, grad = self._gradient(params, batch)
                # one float64 sum per member: NaN / inf anywhere makes it non-finite, and float32 values
                # cannot overflow a float64 sum (one pass instead of isfinite's three)
                active = torch.isfinite(loss) & torch.isfinite(grad.sum(dim=1, dtype=torch.float64))
                if not bool(active.all()):  # before anything is written: a NaN never reaches a checkpoint
                    self._nonfinite(step, active)
                    grad = torch.where(active[:, None], grad, 0.0)  # skipped members: callbacks see no NaN
            if step in self.eval_steps:
                reuse = training and self.full_batch  # this step's forward already measured the training set
                self._log_row(state, loss.detach() if reuse else None,
                              self._accuracy(logits.detach(), batch) if reuse else None, logits.detach() if reuse else None)
                bar.set_postfix(train_acc=f"{state.row['train_acc']:.3f}", test_acc=f"{state.row['test_acc']:.3f}", refresh=False)
                stop = training and stop_at is not None and all(r["test_acc"] >= stop_at for r in state.rows)
            if step in self.ckpt_steps or stop:
                self._checkpoint(state)
            if stop:
                log.info("stopped at step %d: test accuracy reached train.stop_at_test_acc=%g", step, stop_at)
            if not training or stop:
                break
            for cb in self.callbacks:
                new = cb.on_gradient(state, grad)
                if new is not None:
                    grad = new
            self.opt.step(self.flat, grad, state.lr[:, None].to(self.flat.dtype), self.wd, None if bool(active.all()) else active)
            bar.update(1)
        return state

    def _snapshot_callbacks(self) -> list[dict[str, Tensor]]:
        return [{k: v.detach().clone() for k, v in cb.state_dict().items()} if cb.state_key is not None else {}
                for cb in self.callbacks]

    def _log_row(self, state: TrainState, train_loss: Tensor | None, train_acc: Tensor | None,
                 train_logits: Tensor | None) -> None:
        if train_loss is None:  # minibatch (or the final step): measure the whole training set
            train_loss, train_acc, train_logits = self._evaluate(self.train, state.params)
        test_loss, test_acc, test_logits = self._evaluate(self.test, state.params)
        values = torch.stack([train_loss.double(), train_acc.double(), test_loss.double(), test_acc.double(), state.lr.double()]).cpu().tolist()
        parts: list[tuple[str, list[list[float]]]] = []  # ("test_loss/digit0", per member), ...
        if self.components:
            with torch.no_grad():
                for split, logits, batch in (("train", train_logits, self.train), ("test", test_logits, self.test)):
                    loss, acc = (t.double().cpu().T.tolist() for t in self._by_component(logits, batch))
                    parts += [(f"{split}_loss/{c}", loss[j]) for j, c in enumerate(self.components)]
                    parts += [(f"{split}_acc/{c}", acc[j]) for j, c in enumerate(self.components)]
        for i in range(self.n_members):
            row = {"step": state.step, "epoch": state.epoch, "train_loss": values[0][i], "train_acc": values[1][i],
                   "test_loss": values[2][i], "test_acc": values[3][i], "lr": values[4][i]}
            row.update({key: v[i] for key, v in parts})
            self.rows[i].append(row)
            state.rows.append(row)
        state.row = state.rows[0]
        for cb in self.callbacks:
            cb.on_eval(state)

    def _checkpoint(self, state: TrainState) -> None:
        finite = torch.isfinite(self.flat.detach()).all(dim=1)
        if not bool(finite.all()):  # e.g. the last update overflowed: no checkpoint ever holds a NaN
            self._nonfinite(state.step, finite)
        flat = self.flat.detach().cpu()
        m, v = self.opt.exp_avg.cpu(), self.opt.exp_avg_sq.cpu()
        cb_state = [(cb.state_key, {k: t.cpu() for k, t in sd.items()}) for cb, sd in zip(self.callbacks, self._callback_state)
                    if cb.state_key is not None]
        for i, store in enumerate(self.stores):
            params = {k: t[0] for k, t in self.layout.views(flat[i : i + 1]).items()}
            tensors = {f"param.{k}": t for k, t in params.items()}
            tensors.update({f"exp_avg.{k}": t[0] for k, t in self.layout.views(m[i : i + 1]).items()})
            tensors.update({f"exp_avg_sq.{k}": t[0] for k, t in self.layout.views(v[i : i + 1]).items()})
            for key, sd in cb_state:
                tensors.update({f"callback.{key}.{k}": t[i] for k, t in sd.items()})
            # list the folder only on resume: the resumed step's checkpoint is usually there already
            fresh = state.step > self.start_step or state.step not in store.checkpoint_steps()
            store.save_step(state.step, params, tensors, {"adam_t": str(self.opt.t)}, self.rows[i], checkpoint=fresh)
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


def train(cfg: RunConfig, out: str | Path | None = None, resume: bool = False, callbacks: Sequence[Callback] = (),
          overwrite: bool = False) -> Path:
    """Train one run into `out` (default runs/<op><p>-seed<seed>-<time>); returns the run directory.

    A folder that already holds a run is refused unless `resume` (continue it) or `overwrite`
    (replace it: its run files are deleted once it is locked) is given.
    """
    _check_type(cfg)
    out = Path(out) if out is not None else default_out(cfg)
    return Trainer([cfg], [out], resume=resume, callbacks=callbacks, overwrite=overwrite).run()[0]


def train_ensemble(cfgs: Sequence[RunConfig], outs: Sequence[str | Path], resume: bool = False,
                   callbacks: Sequence[Callback] = (), overwrite: bool = False) -> list[Path]:
    """Train several runs at once with stacked parameters; each member writes its own run directory."""
    return Trainer(cfgs, outs, resume=resume, callbacks=callbacks, overwrite=overwrite).run()
