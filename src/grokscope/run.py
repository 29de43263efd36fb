"""`Run`: the one reader of a run directory, for the analysis, the report and notebooks alike.

    run = grokscope.load_run("runs/add113")
    run.config, run.task, run.metrics, run.steps       # what training wrote
    run.params(step), run.checkpoint(step)             # parameters / a model with hooks, verified by sha256
    run.analysis("fourier")                            # what an analysis wrote (RUN/analysis/fourier/)
    loss = run.loss_fn("train")                        # stacked params -> loss per member, differentiable twice

`loss_fn` is the building block for loss-landscape work: Hessian-vector products (`hvp`),
slices and mode connectivity (points as members), SGLD chains (chains as members) and ablations.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grokscope.config import ConfigError, RunConfig
from grokscope.engine.generic import GenericEngine
from grokscope.io import RunDirError
from grokscope.loss import log_probs, loss_dtype
from grokscope.models import make_model
from grokscope.runstore import RunStore, StoredAnalysis
from grokscope.tasks import Split, Task, components_of, task_class


@dataclass
class Run:
    """A run directory, read: config, split, metrics, checkpoints (loaded lazily, verified) and analyses."""

    path: Path
    config: RunConfig
    meta: dict
    task: Task
    store: RunStore = field(repr=False)

    @property
    def name(self) -> str:
        return self.config.name or self.path.name

    def __repr__(self) -> str:
        steps = self.steps
        return (f"Run({str(self.path)!r}, {self.task.describe()}, {len(steps)} checkpoints"
                + (f" up to step {steps[-1]}" if steps else "") + f", analyses {self.analyses})")

    @property
    def metrics(self) -> pd.DataFrame:
        return self.store.load_metrics()

    @property
    def steps(self) -> list[int]:
        """Checkpointed steps, ascending."""
        return self.store.checkpoint_steps()

    def params(self, step: int | None = None) -> dict[str, Tensor]:
        """{TransformerLens name: tensor} at a checkpoint (default: the last)."""
        if step is None:
            if not self.steps:
                raise RunDirError(f"{self.path} has no checkpoints")
            step = self.steps[-1]
        params = self.store.load_checkpoint(step)
        self._check_shapes(params, step)
        return params

    @functools.cached_property
    def _shapes(self) -> dict[str, tuple]:
        """Parameter shapes of the model config.json describes."""
        return _shapes_of(self.model())

    def _check_shapes(self, params: dict[str, Tensor], step: int) -> None:
        """A checkpoint must fit the model config.json describes: else one error naming the config field,
        never a silent analysis of the wrong model or an IndexError deep inside one."""
        if set(params) != set(self._shapes):
            raise RunDirError(f"{self.store.checkpoint_path(step)}: tensors {sorted(set(params) ^ set(self._shapes))} "
                              f"do not match the model in {self.store.config_path}")
        got_shapes = _shapes_of(params)
        for name, want in self._shapes.items():
            got = got_shapes[name]
            if got != want:
                field = self._field_of(want, got, got_shapes)
                raise RunDirError(f"{self.store.config_path}: {field} disagrees with the checkpoints ({name} is "
                                  f"{list(got)} in {self.store.checkpoint_path(step).name}; the config needs {list(want)})")

    def _field_of(self, want: tuple, got: tuple, got_shapes: dict[str, tuple]) -> str:
        """The config field that explains the mismatch: the one which, set to the checkpoint's size,
        gives a model of the checkpoint's shapes (else the first whose value is the expected size)."""
        mismatched = [(w, g) for w, g in zip(want, got) if w != g] or [(want[0], got[0] if got else None)]
        w, g = mismatched[0]
        candidates = [f"model.{k}" for k in ("d_model", "d_mlp", "n_heads", "d_head") if getattr(self.config.model, k, None) == w]
        p = getattr(self.config.task, "p", None)
        candidates += ["task.p"] if p is not None and w in (p, p + 1) else []
        for field in candidates:
            value = g - (w - p) if field == "task.p" else g
            try:
                cfg = self.config.replace(**{field: value})
                task = task_class(cfg.task).from_config(cfg.task)
            except (ConfigError, ValueError):
                continue
            if _shapes_of(make_model(cfg, task)) == got_shapes:
                return field
        return candidates[0] if candidates else "the model config"

    def model(self) -> nn.Module:
        """The run's model, freshly initialised (load a checkpoint into it, or use `checkpoint`)."""
        return make_model(self.config, self.task)

    def checkpoint(self, step: int | None = None, device: str | torch.device = "cpu") -> nn.Module:
        """The model at a checkpoint, ready for `run_with_cache`."""
        model = self.model()
        model.load_state_dict(self.params(step))  # params() checked names and shapes
        return model.to(device).eval()

    # -- analyses -------------------------------------------------------------------------------
    @property
    def analyses(self) -> list[str]:
        """Names of the analyses written into RUN/analysis/."""
        return self.store.analysis_names()

    def analysis(self, name: str | None = None) -> StoredAnalysis:
        """What analysis `name` wrote (None: the run-level summary and progress table)."""
        return self.store.read_analysis(name)

    # -- the loss as a function of the parameters -----------------------------------------------
    def loss_fn(self, split: Split = "train", device: str | torch.device = "cpu",
                dtype: torch.dtype | None = None, component: str | None = None) -> Callable[..., Tensor]:
        """`f(params, rows=None) -> loss [member]`: the mean cross-entropy (over softmax, or StableMax as
        the run's train.loss says) over `split`, for stacked
        parameters {name: [member, *shape]}, through the generic engine and plain autograd ops (so
        torch.func transforms such as hvp, jacrev and vmap go through it). `rows` [member, B] (long)
        picks each member's own examples of the split (SGLD minibatches); None is the whole split.
        `component` keeps only that loss component's targets (`Task.components`: a circuit's loss).
        The loss is computed in the run's train.loss_dtype, as the trainer's evaluation; `dtype`
        casts the parameters first. `f.n_examples` is the split's size."""
        return self._split_fn(split, device, dtype, component, accuracy=False)

    def accuracy_fn(self, split: Split = "train", device: str | torch.device = "cpu",
                    component: str | None = None) -> Callable[..., Tensor]:
        """`f(params, rows=None) -> accuracy [member]`: the share of `split`'s targets (of `component`'s)
        predicted right, the companion of `loss_fn`."""
        return self._split_fn(split, device, None, component, accuracy=True)

    def _split_fn(self, split: Split, device: str | torch.device, dtype: torch.dtype | None, component: str | None,
                  accuracy: bool) -> Callable[..., Tensor]:
        if split not in ("train", "test"):
            raise ConfigError("split", f"must be one of train, test (got {split!r})")
        model = self.model().to(device)
        engine = GenericEngine(self.config.model, self.task, model)
        batch = self.task.batch(split).to(device)
        dtype_loss = loss_dtype(self.config.train.loss_dtype)
        kind = self.config.train.loss  # cross_entropy over softmax, or over StableMax
        valid = batch.valid()  # [N, n_target]: the targets that count (real rows, a label present)
        if component is not None:
            valid = valid & self._component_mask(batch, component, split)
        targets = batch.targets.clamp_min(0)  # NO_TARGET labels are masked out below

        def evaluate(params: dict[str, Tensor], rows: Tensor | None = None) -> Tensor:
            if dtype is not None:
                params = {k: v.to(dtype) for k, v in params.items()}
            m = next(iter(params.values())).shape[0]
            if rows is None:
                inputs, tg, ok = batch.inputs.expand(m, *batch.inputs.shape), targets.expand(m, -1, -1), valid.expand(m, -1, -1)
            else:
                inputs, tg, ok = batch.inputs[rows], targets[rows], valid[rows]
            logits = engine.logits(params, inputs).to(dtype_loss)  # [m B n_target V]
            ok = ok.flatten(1).to(logits.dtype)
            if accuracy:
                score = (logits.argmax(-1).flatten(1) == tg.flatten(1)).to(logits.dtype)
            elif kind == "stablemax":
                score = -log_probs(logits, kind).gather(-1, tg[..., None]).flatten(1)  # [m, B n_target]
            else:
                score = F.cross_entropy(logits.flatten(1, 2).transpose(1, 2), tg.flatten(1), reduction="none")
            return (score * ok).sum(-1) / ok.sum(-1).clamp_min(1)

        evaluate.n_examples = len(batch)  # type: ignore[attr-defined]
        return evaluate

    def _component_mask(self, batch: Any, component: str, split: str) -> Tensor:
        """[N, n_target] the targets of one loss component; a name the task lacks, or one without
        targets in the split, is a ConfigError naming `component`."""
        names = components_of(self.task)
        if component not in names:
            raise ConfigError("component", f"must be one of {', '.join(names) or '(none: the task has one loss)'} "
                                           f"(got {component!r})")
        mask = batch.components == names.index(component)
        if not bool((mask & batch.valid()).any()):
            raise ConfigError("component", f"{component!r} has no targets in the {split} split")
        return mask

    def stacked_params(self, steps: list[int] | int | None = None) -> dict[str, Tensor]:
        """Checkpoints as one stacked parameter dict {name: [member, *shape]} (default: the last)."""
        steps = [self.steps[-1] if steps is None else steps] if not isinstance(steps, list) else steps
        loaded = [self.params(s) for s in steps]
        return {k: torch.stack([p[k] for p in loaded]) for k in loaded[0]}


def _shapes_of(params: nn.Module | dict[str, Tensor]) -> dict[str, tuple]:
    tensors = params.state_dict() if isinstance(params, nn.Module) else params
    return {k: tuple(v.shape) for k, v in tensors.items()}


def hvp(f: Callable[[dict[str, Tensor]], Tensor], params: dict[str, Tensor], v: dict[str, Tensor]) -> dict[str, Tensor]:
    """The Hessian-vector product H(params) v of a scalar f, forward-over-reverse (torch.func.jvp of
    torch.func.grad): one extra pass, no Hessian materialised. f = lambda p: run.loss_fn()(p).sum()."""
    return torch.func.jvp(torch.func.grad(f), (params,), (v,))[1]


def load_run(path: str | Path) -> Run:
    """Open a run directory; raises RunDirError with the offending file on anything malformed."""
    store = RunStore(path)
    if not store.path.is_dir():
        raise RunDirError(f"{store.path} is not a directory")
    raw, meta = store.read_config()
    try:
        cfg = RunConfig.from_dict(raw)
    except ConfigError as err:
        raise RunDirError(f"{store.config_path}: {err}") from None
    try:
        task = task_class(cfg.task).from_split(cfg.task, store.read_split())
    except (ValueError, KeyError) as err:
        raise RunDirError(f"{store.split_path}: {err}") from None
    return Run(store.path, cfg, meta, task, store)


def checkpoint_step(run: Any, step: int | None, field: str = "step") -> int:
    """`step` if the run has a checkpoint there (None: the last one); else a ConfigError naming `field`."""
    if not run.steps:
        raise RunDirError(f"{getattr(run, 'path', 'the run')} has no checkpoints")
    if step is None:
        return run.steps[-1]
    if step not in run.steps:
        raise ConfigError(field, f"no checkpoint at step {step} in {getattr(run, 'path', 'the run')} (checkpoints: "
                                 f"{run.steps[0]}..{run.steps[-1]}, {len(run.steps)} of them)")
    return step


def as_run(run_or_path: Any) -> Any:
    """A Run from a path; a Run or an in-memory run (anything with config, task, steps, params) as it is."""
    if isinstance(run_or_path, (str, Path)):
        return load_run(run_or_path)
    if not all(hasattr(run_or_path, a) for a in ("config", "task", "steps", "params")):
        raise ConfigError("run", f"must be a run directory path, a Run or a MemoryRun (got {type(run_or_path).__name__})")
    return run_or_path
