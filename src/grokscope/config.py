"""Run configuration: small frozen dataclasses, one per component, composed into `RunConfig`.

Every key is addressable as `section.field` (the names in docs/DESIGN.md). Values are checked when
a config is built, so a bad value fails before anything is written, with one line that names the
field and says what is allowed (`ConfigError`). Unknown keys are errors, never silently dropped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml


_LINE_BREAKS = {c: repr(chr(c))[1:-1] for c in (10, 11, 12, 13, 28, 29, 30, 133, 0x2028, 0x2029)}  # what splitlines() splits on


class ConfigError(ValueError):
    """A bad config value. `str(err)` is one line: `field: what is wrong (allowed: ...)`."""

    def __init__(self, key: str, message: str):
        self.key = key
        # One line whatever the input: a key or value from a file may hold line breaks.
        super().__init__(f"{key}: {message}".translate(_LINE_BREAKS))


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % d for d in range(2, math.isqrt(n) + 1))


# --- the components --------------------------------------------------------------------------
# `task` and `model` are families: the section's `name` picks the dataclass (TASK_CONFIGS,
# MODEL_CONFIGS), so a new task or model brings its own keys and checks without touching the
# others. A family's config also says how big its data and model are (`shape`, `n_params`), which
# is all `RunConfig.check` needs to catch absurd sizes before anything is built.


@dataclass(frozen=True)
class TaskShape:
    """What the model and the trainer need to know of a task before its data exists."""

    d_vocab: int  # 0: the inputs are n_ctx real-valued features, not tokens (two_feature_digits' pixels)
    d_vocab_out: int
    n_ctx: int
    n_train: Optional[int]  # training examples (sequences); None = infinite data (fresh examples every step)


MODULAR_OPS = ("add", "sub", "mul", "div", "x2xyy2", "rand")


@dataclass(frozen=True)
class ModularConfig:
    """z = op(x, y) mod p over the p*p table (grokscope.tasks.modular)."""

    name: str = "modular"
    op: Literal["add", "sub", "mul", "div", "x2xyy2", "rand"] = "add"
    p: int = 113  # the modulus; Nanda et al. (2023) use 113
    frac_train: float = 0.3  # share of the p*p pairs used for training
    data_seed: int = 0  # fixes the train/test split (and the `rand` table)
    split: Literal["random", "symmetric"] = "random"  # symmetric: (x,y) and (y,x) on the same side

    def check(self) -> None:
        if self.p < 3:
            raise ConfigError("task.p", f"must be an integer >= 3 (got {self.p})")
        if self.p > 4096:
            raise ConfigError("task.p", f"must be <= 4096 (the p*p table must fit in memory; got {self.p})")
        if self.op in ("div", "mul") and not is_prime(self.p):
            raise ConfigError("task.p", f"must be prime for op '{self.op}' (got {self.p})")
        if not (0.0 < self.frac_train <= 1.0):
            raise ConfigError("task.frac_train", f"must be in (0, 1] (got {self.frac_train})")
        if self.data_seed < 0:
            raise ConfigError("task.data_seed", f"must be >= 0 (got {self.data_seed})")

    def label(self) -> str:  # names default run directories: runs/add113-seed0-<time>
        return f"{self.op}{self.p}"

    def title(self) -> str:  # what reports call the task
        return f"{self.op} mod {self.p}"

    def shape(self) -> TaskShape:
        n_pairs = self.p * (self.p - 1) if self.op == "div" else self.p**2
        return TaskShape(self.p + 1, self.p, 3, max(1, round(self.frac_train * n_pairs)))


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer in TransformerLens layout (grokscope.models.transformer)."""

    name: str = "transformer"
    n_layers: int = 1
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    act_fn: Literal["relu", "gelu"] = "relu"
    normalization: Optional[Literal["LN"]] = None  # Nanda et al. use no LayerNorm
    attn_only: bool = False
    attn_bias: bool = False  # b_Q, b_K, b_V, b_O; the reference model has none
    unembed_bias: bool = False  # b_U; the reference model has none
    # the dtype the unembedding (resid @ W_U + b_U) computes the logits in, apart from the weights' (null: theirs)
    logits_dtype: Optional[Literal["float64", "float32", "bfloat16", "float16"]] = None

    def check(self) -> None:
        for key in ("n_layers", "d_model", "n_heads", "d_head"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key}", f"must be an integer >= 1 (got {getattr(self, key)})")
        if self.n_layers > 16:
            raise ConfigError("model.n_layers", f"must be <= 16 (got {self.n_layers})")
        if self.d_mlp < 1 and not self.attn_only:
            raise ConfigError("model.d_mlp", f"must be >= 1 unless model.attn_only (got {self.d_mlp})")

    def title(self) -> str:  # what reports call the model
        mlp = "attention only" if self.attn_only else f"d_mlp {self.d_mlp}, {self.act_fn}"
        return (f"transformer, {self.n_layers} layer(s), d_model {self.d_model}, {self.n_heads} heads x {self.d_head}, "
                f"{mlp}" + (", LayerNorm" if self.normalization else ""))

    def n_params(self, shape: TaskShape) -> int:
        per_layer = 4 * self.n_heads * self.d_model * self.d_head + (0 if self.attn_only else 2 * self.d_model * self.d_mlp)
        return (shape.d_vocab + shape.d_vocab_out) * self.d_model + self.n_layers * per_layer

    def activation_floats(self, shape: TaskShape) -> int:
        """Floats of activation per example (forward and backward), for the trainer's memory estimate."""
        return shape.n_ctx * (8 * self.d_model + 3 * self.d_mlp + shape.d_vocab_out) * self.n_layers

    def size_key(self) -> str:
        """The key to name when the model is too big: the one furthest above its canonical value."""
        sizes = {"model.d_model": self.d_model / 128, "model.d_mlp": self.d_mlp / 512, "model.n_heads": self.n_heads / 4,
                 "model.d_head": self.d_head / 32, "model.n_layers": self.n_layers}
        return max(sizes, key=sizes.get)


@dataclass(frozen=True)
class OptimConfig:
    """The optimizer (grokscope.optim.FlatOptimizer has the update rules). `name`: adamw (decoupled
    weight decay), adam (decay added to the gradient, as an L2 penalty) or sgd (`momentum` 0: plain).
    The decay pulls towards `decay_to` (zero, or the run's initial weights) with an L2 or L1 norm
    (`decay_norm`); `orthogonal` projects each tensor's gradient off its weights first (⊥AdamW,
    Prieto et al. 2025)."""

    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1.0  # strong decay is what makes the canonical run grok (Nanda et al. 2023)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    warmup_steps: int = 10  # linear warm-up lr * min(step / warmup_steps, 1), as the reference code
    momentum: float = 0.0  # sgd only
    decay_to: Literal["zero", "init"] = "zero"
    decay_norm: Literal["l2", "l1"] = "l2"
    orthogonal: bool = False  # ⊥Grad: the gradient orthogonal to the weights, rescaled to its norm

    def check(self) -> None:
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError("optim.lr", f"must be a finite number > 0 (got {self.lr})")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError("optim.weight_decay", f"must be a finite number >= 0 (got {self.weight_decay})")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError("optim.betas", f"must be two numbers in [0, 1) (got {list(self.betas)})")
        if not (self.eps > 0 and math.isfinite(self.eps)):
            raise ConfigError("optim.eps", f"must be a finite number > 0 (got {self.eps})")
        if self.warmup_steps < 0:
            raise ConfigError("optim.warmup_steps", f"must be >= 0 (got {self.warmup_steps})")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError("optim.momentum", f"must be in [0, 1) (got {self.momentum})")
        if self.momentum and self.name != "sgd":
            raise ConfigError("optim.momentum", f"is for optim.name sgd (got optim.name {self.name}: set its optim.betas)")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40000  # the paper trains 40k epochs: grokking near 10k, clean-up done by ~15k
    batch_size: Optional[int] = None  # None = full batch (one step per epoch)
    seed: int = 0  # fixes the initialisation and the minibatch order
    loss_dtype: Literal["float64", "float32"] = "float64"  # float32 CE causes "slingshot" spikes
    # the training loss: cross-entropy over softmax, or over StableMax (Prieto et al. 2025: s(x) = x + 1
    # for x >= 0, 1 / (1 - x) below, in place of exp), which cannot round to an exact one-hot
    loss: Literal["cross_entropy", "stablemax"] = "cross_entropy"
    eval_every: int = 10  # steps between test evaluations (plus log-spaced early steps)
    checkpoint_every: int = 100  # steps between checkpoints (plus log-spaced early steps)
    log_spaced: bool = True  # also evaluate / checkpoint at ~log-spaced early steps
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    engine: Literal["auto", "fast", "generic"] = "auto"  # auto picks fast where the model allows
    on_nonfinite: Literal["stop", "skip"] = "stop"  # NaN/inf loss: stop the run, or skip the step
    progress: bool = True  # show a progress bar (only when stderr is a terminal)
    deterministic: bool = False  # bit-identical across processes on one machine (grokscope.determinism)
    log: Literal["none", "wandb", "tensorboard"] = "none"  # also log metrics to W&B or TensorBoard (grokscope.loggers)
    # end the run early, with a checkpoint, at the first evaluation where every member's test accuracy
    # reaches this value (a compute budget for searches such as `grokscope crossover`); None: never
    stop_at_test_acc: Optional[float] = None

    def check(self) -> None:
        if self.epochs < 1:
            raise ConfigError("train.epochs", f"must be an integer >= 1 (got {self.epochs})")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError("train.batch_size", f"must be null (full batch) or an integer >= 1 (got {self.batch_size})")
        if not (0 <= self.seed < 2**64):  # what torch.Generator.manual_seed accepts
            raise ConfigError("train.seed", f"must be in 0..2**64-1 (got {self.seed})")
        if self.eval_every < 1:
            raise ConfigError("train.eval_every", f"must be an integer >= 1 (got {self.eval_every})")
        if self.checkpoint_every < 1:
            raise ConfigError("train.checkpoint_every", f"must be an integer >= 1 (got {self.checkpoint_every})")
        if self.stop_at_test_acc is not None and not (0 < self.stop_at_test_acc <= 1):
            raise ConfigError("train.stop_at_test_acc", f"must be null or in (0, 1] (got {self.stop_at_test_acc})")
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ConfigError("train.device", f"must be one of auto, cpu, cuda, cuda:N (got {dev!r})")


@dataclass(frozen=True)
class InterventionConfig:
    """One entry of the `interventions:` list: `kind` picks the dataclass (INTERVENTION_CONFIGS).

    Each kind subclasses this, adds its keys, and is built into a training callback by
    grokscope.interventions; the entry is recorded in config.json, so a resumed run rebuilds it.
    """

    kind: str = ""

    def check(self, key: str) -> None: ...

    def check_task(self, key: str, task: Any) -> None:
        """Refuse a task this intervention cannot act on (most act on any task)."""


@dataclass(frozen=True)
class LrMultiplier(InterventionConfig):
    """From step `at_step` on, every member's learning rate is multiplied by `factor`."""

    kind: str = "lr_multiplier"
    at_step: int = 0
    factor: float = 1.0

    def check(self, key: str) -> None:
        if self.at_step < 0:
            raise ConfigError(f"{key}.at_step", f"must be an integer >= 0 (got {self.at_step})")
        if not (self.factor >= 0 and math.isfinite(self.factor)):
            raise ConfigError(f"{key}.factor", f"must be a finite number >= 0 (got {self.factor})")


@dataclass(frozen=True)
class GrokfastEMA(InterventionConfig):
    """Grokfast-EMA (Lee et al. 2024): grad <- grad + lamb * ema, ema <- alpha ema + (1 - alpha) grad.

    Amplifies the slow components of the gradient; the EMA starts as the first gradient, as in the
    reference implementation, and is saved with the optimizer state so a resume is exact.
    """

    kind: str = "grokfast_ema"
    alpha: float = 0.98
    lamb: float = 2.0
    from_step: int = 0  # the filter runs from this step on (the EMA too)

    def check(self, key: str) -> None:
        if not 0.0 <= self.alpha < 1.0:
            raise ConfigError(f"{key}.alpha", f"must be in [0, 1) (got {self.alpha})")
        if not (self.lamb >= 0 and math.isfinite(self.lamb)):
            raise ConfigError(f"{key}.lamb", f"must be a finite number >= 0 (got {self.lamb})")
        if self.from_step < 0:
            raise ConfigError(f"{key}.from_step", f"must be an integer >= 0 (got {self.from_step})")


@dataclass(frozen=True)
class GrokfastMA(InterventionConfig):
    """Grokfast-MA (Lee et al. 2024): grad <- grad + lamb * (mean of the last `window` gradients).

    The published defaults: window 100, lamb 5. As in the reference implementation the filter waits
    (`warmup`) until the window is full; the window is saved with the optimizer state.
    """

    kind: str = "grokfast_ma"
    window: int = 100
    lamb: float = 5.0
    warmup: bool = True
    from_step: int = 0

    def check(self, key: str) -> None:
        if not 1 <= self.window <= 10_000:
            raise ConfigError(f"{key}.window", f"must be an integer in 1..10000 (got {self.window})")
        if not (self.lamb >= 0 and math.isfinite(self.lamb)):
            raise ConfigError(f"{key}.lamb", f"must be a finite number >= 0 (got {self.lamb})")
        if self.from_step < 0:
            raise ConfigError(f"{key}.from_step", f"must be an integer >= 0 (got {self.from_step})")


@dataclass(frozen=True)
class ExcludedLoss(InterventionConfig):
    """Train on an interpretability metric (seed 004's future work): loss <- loss + coef * excluded loss.

    The excluded loss is the training loss of the logits with the key frequencies' directions
    cos / sin(w_k (a + s b)) removed, as the analysis defines it (grokscope.analysis.modular.measures).
    coef > 0 penalises what the model predicts without its key frequencies; coef < 0 rewards it,
    up to chance (the term is clamped at ln(d_vocab_out), so the ascent stops there). Key frequencies
    are re-derived every `every` steps from the current logits by the analysis' logit condition
    (r_k >= null_mult * 2 / (n^2 - 1)) and kept once found; until one is found the term is zero.
    Modular tasks only: the projection needs the model's logits on every (x, y) pair of the group grid.
    """

    kind: str = "excluded_loss"
    coef: float = 1.0
    every: int = 100
    null_mult: float = 10.0
    from_step: int = 0

    def check(self, key: str) -> None:
        if not (math.isfinite(self.coef) and self.coef != 0):
            raise ConfigError(f"{key}.coef", f"must be a finite non-zero number (got {self.coef})")
        if self.every < 1:
            raise ConfigError(f"{key}.every", f"must be an integer >= 1 (got {self.every})")
        if not (self.null_mult > 0 and math.isfinite(self.null_mult)):
            raise ConfigError(f"{key}.null_mult", f"must be a finite number > 0 (got {self.null_mult})")
        if self.from_step < 0:
            raise ConfigError(f"{key}.from_step", f"must be an integer >= 0 (got {self.from_step})")

    def derives_keys_at(self, step: int) -> bool:
        """Whether the key frequencies are re-derived at this step."""
        return step >= self.from_step and (step - self.from_step) % self.every == 0

    def share_needed(self, n: int) -> float:
        """The logit share r_k that makes k a key, in a group of order n."""
        return self.null_mult * 2.0 / (n * n - 1)

    def check_task(self, key: str, task: Any) -> None:
        if task.name != "modular":
            raise ConfigError(f"{key}.kind", f"excluded_loss needs task.name: modular (got {task.name!r})")


@dataclass(frozen=True)
class RunConfig:
    task: Any = field(default_factory=ModularConfig)  # a TASK_CONFIGS family member
    model: Any = field(default_factory=ModelConfig)  # a MODEL_CONFIGS family member
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    interventions: tuple = ()  # InterventionConfig entries, applied in order
    name: Optional[str] = None  # a label for reports; free text (escaped wherever shown)

    def check(self) -> None:
        for section in SECTIONS:
            getattr(self, section).check()
        for i, entry in enumerate(self.interventions):
            entry.check(f"interventions.{i}")
            entry.check_task(f"interventions.{i}", self.task)
        shape = self.task.shape()
        if shape.d_vocab == 0 and not getattr(self.model, "takes_features", False):
            families = ", ".join(n for n, c in MODEL_CONFIGS.items() if getattr(c, "takes_features", False))
            raise ConfigError("model.name", f"task {self.task.name!r} gives real-valued features, not tokens "
                              f"(allowed: {families}; got {self.model.name!r})")
        if shape.n_train is None:
            if self.train.batch_size is None:
                raise ConfigError("train.batch_size", "must be an integer >= 1 with infinite data (task.n_train: null): "
                                  "the examples drawn per step")
        elif self.train.batch_size is not None:
            if self.train.batch_size > shape.n_train:
                raise ConfigError("train.batch_size", f"must be <= the {shape.n_train} training examples (got {self.train.batch_size})")
        # Absurd sizes fail here, with the field named, not later as an allocation error or a hang.
        n_params = self.model.n_params(shape)
        if n_params > MAX_PARAMS:
            raise ConfigError(self.model.size_key(), f"the model would have ~{n_params:.3g} parameters (max {MAX_PARAMS:.3g}); "
                              "reduce model.d_model, model.d_mlp, model.n_heads, model.d_head or model.n_layers")
        steps = self.total_steps()
        for key, every, limit in (("train.eval_every", self.train.eval_every, 10**7), ("train.checkpoint_every", self.train.checkpoint_every, 10**6)):
            if steps // every > limit:
                raise ConfigError(key, f"would give {steps // every} {key[6:-6]}s over {steps} steps (max {limit}); raise it or lower train.epochs")

    def total_steps(self) -> int:
        """Optimizer updates over the whole run: epochs x ceil(n_train / batch_size) (1 per epoch full batch);
        with infinite data an epoch is one step of batch_size fresh examples."""
        bs, n = self.train.batch_size, self.task.shape().n_train
        return self.train.epochs * (1 if n is None or bs is None or bs >= n else -(-n // bs))

    # -- conversion --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples -> lists, a plain tree

    @classmethod
    def from_dict(cls, data: Any) -> "RunConfig":
        """Build and check a config from a nested dict; missing keys take their defaults."""
        if not isinstance(data, dict):
            raise ConfigError("config", f"must be a mapping of sections (got {type(data).__name__})")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "name":
                kwargs["name"] = None if value is None else str(value)
            elif key == "interventions":
                kwargs["interventions"] = _build_interventions(value)
            elif key in SECTIONS:
                kwargs[key] = _build_section(key, value)
            else:
                raise ConfigError(str(key), f"unknown key (allowed: {', '.join(ALL_TOP_KEYS)})")
        cfg = cls(**kwargs)
        cfg.check()
        return cfg

    def replace(self, **overrides: Any) -> "RunConfig":
        """A copy with dotted overrides, e.g. `cfg.replace(**{"optim.lr": 3e-3})`."""
        return apply_overrides(self, overrides)

    def __repr__(self) -> str:
        """Only what differs from the defaults (the canonical run), as dotted keys: short in a notebook."""
        default = flatten_dict(RunConfig().to_dict())
        changed = {k: v for k, v in flatten_dict(self.to_dict()).items() if default.get(k, object()) != v}
        return "RunConfig(" + ", ".join(f"{k}={v!r}" for k, v in changed.items()) + ")"


MAX_PARAMS = 4 * 10**9  # parameters per model: far beyond grokking scale, well below an allocation failure

# The section families: name -> config dataclass. New tasks and models register theirs here
# (grokscope.tasks.register_task, grokscope.models.register_model).
TASK_CONFIGS: dict[str, type] = {"modular": ModularConfig}
MODEL_CONFIGS: dict[str, type] = {"transformer": ModelConfig}
INTERVENTION_CONFIGS: dict[str, type] = {"lr_multiplier": LrMultiplier, "grokfast_ema": GrokfastEMA, "grokfast_ma": GrokfastMA,
                                         "excluded_loss": ExcludedLoss}
FAMILIES: dict[str, dict[str, type]] = {"task": TASK_CONFIGS, "model": MODEL_CONFIGS}
# Each section's default dataclass (the canonical run's).
SECTIONS: dict[str, type] = {"task": ModularConfig, "model": ModelConfig, "optim": OptimConfig, "train": TrainConfig}
ALL_TOP_KEYS = (*SECTIONS, "interventions", "name")


def flatten_dict(d: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: the dotted keys of a nested config (lists are leaves)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(flatten_dict(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def _family(section: str, name: Any) -> type:
    family = FAMILIES.get(section)
    if family is None:
        return SECTIONS[section]
    if not isinstance(name, str) or name not in family:
        raise ConfigError(f"{section}.name", f"unknown {section} {name!r} (allowed: {', '.join(family)})")
    return family[name]


def _build_section(section: str, data: Any) -> Any:
    if data is None:
        return SECTIONS[section]()
    if not isinstance(data, dict):
        raise ConfigError(section, f"must be a mapping (got {type(data).__name__})")
    cls = _family(section, data.get("name", SECTIONS[section]().name) if section in FAMILIES else None)
    return _build_dataclass(cls, section, data)


def _build_dataclass(cls: type, prefix: str, data: dict) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{prefix}.{key}", f"unknown key (allowed: {', '.join(names)})")
        kwargs[key] = coerce(f"{prefix}.{key}", value, hints[key])
    return cls(**kwargs)


def _build_interventions(data: Any) -> tuple:
    if data is None:
        return ()
    if isinstance(data, str):
        data = _parse_scalar(data)
    if not isinstance(data, (list, tuple)):
        raise ConfigError("interventions", f"must be a list of mappings with a kind (got {type(data).__name__})")
    out = []
    for i, entry in enumerate(data):
        key = f"interventions.{i}"
        if not isinstance(entry, dict):
            raise ConfigError(key, f"must be a mapping with a kind (got {type(entry).__name__})")
        kind = entry.get("kind")
        if not isinstance(kind, str) or kind not in INTERVENTION_CONFIGS:
            raise ConfigError(f"{key}.kind", f"unknown intervention {kind!r} (allowed: {', '.join(INTERVENTION_CONFIGS)})")
        out.append(_build_dataclass(INTERVENTION_CONFIGS[kind], key, entry))
    return tuple(out)


def coerce(key: str, value: Any, hint: Any) -> Any:
    """Check `value` against a type hint, converting strings from the command line where exact."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            try:
                return coerce(key, value, inner[0])
            except ConfigError as err:
                raise ConfigError(key, str(err).split(": ", 1)[1].replace("(got", "or null (got", 1)) from None
    if origin is Literal:
        allowed = ", ".join(str(a) for a in args)
        if value in args:
            return value
        raise ConfigError(key, f"must be one of {allowed} (got {value!r})")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(key, f"must be true or false (got {value!r})")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(key, f"must be an integer (got {value!r})")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(key, f"must be an integer (got {value!r})")
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(key, f"must be a number (got {value!r})")
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value)
            except ValueError:
                raise ConfigError(key, f"must be a number (got {value!r})") from None
        else:
            raise ConfigError(key, f"must be a number (got {value!r})")
        if math.isnan(out):
            raise ConfigError(key, "must be a number, not NaN")
        return out
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"must be a string (got {value!r})")
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[str, ...]: a list of any length
        if isinstance(value, str):
            value = _parse_scalar(value)
            value = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"must be a list (got {value!r})")
        return tuple(coerce(key, v, args[0]) for v in value)
    if origin is tuple:
        if isinstance(value, str):
            value = _parse_scalar(value)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(key, f"must be a list of {len(args)} numbers (got {value!r})")
        return tuple(coerce(key, v, a) for v, a in zip(value, args))
    raise ConfigError(key, f"unsupported type {hint}")  # pragma: no cover - a developer error


# --- overrides, files, presets ---------------------------------------------------------------

def _parse_scalar(text: str) -> Any:
    """Parse a command-line value: JSON/YAML scalars and lists; anything else stays a string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_set(items: list[str]) -> dict[str, Any]:
    """`["optim.lr=3e-3", "task.op=sub"]` -> {"optim.lr": 3e-3, "task.op": "sub"}."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError("--set", f"expects key=value, e.g. optim.lr=3e-3 (got {item!r})")
        out[key.strip()] = _parse_scalar(text) if text != "" else ""
    return out


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Dotted overrides on a config. Setting `task.name` / `model.name` to another family starts that
    section from the family's defaults (the old family's keys do not carry over)."""
    data = cfg.to_dict()
    for key, value in overrides.items():
        if key in ("name", "interventions"):
            data[key] = value
            continue
        section, _, leaf = key.partition(".")
        if section not in SECTIONS or not leaf:
            raise ConfigError(key, f"unknown key (sections: {', '.join(ALL_TOP_KEYS)}; e.g. optim.lr)")
        if leaf == "name" and section in FAMILIES and value != data[section].get("name"):
            data[section] = {}
        data[section][leaf] = value
    return RunConfig.from_dict(data)


def merge_config(base: RunConfig, data: dict[str, Any]) -> RunConfig:
    """`data` (a config file's dict) over `base`, section by section; a section naming another
    family replaces the base section instead of merging into it."""
    merged = base.to_dict()
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict) and isinstance(merged.get(key), dict):
            if key in FAMILIES and value.get("name", merged[key].get("name")) != merged[key].get("name"):
                merged[key] = {}
            merged[key].update(value)
        else:
            merged[key] = value
    return RunConfig.from_dict(merged)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict (not yet checked)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError("CONFIG", f"cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("CONFIG", f"{path} is not UTF-8 text (expected a YAML or JSON config)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise ConfigError("CONFIG", f"{path} is not valid YAML/JSON{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("CONFIG", f"{path} must hold a mapping of sections (got {type(data).__name__})")
    if "config" in data and "meta" in data:  # a run directory's config.json
        data = data["config"]
    return data


def parse_seeds(value: Any, key: str = "seeds") -> list[int]:
    """"0-63", "0,1,5", 3 or [0, 1] -> a list of distinct seeds >= 0 (`--seeds`, a sweep's `seeds`)."""
    if isinstance(value, bool):
        raise ConfigError(key, f"must look like 0-63, 0,1,5 or a list of integers (got {value!r})")
    if isinstance(value, int):
        seeds = [value]
    elif isinstance(value, (list, tuple)):
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
            raise ConfigError(key, f"must be a list of integers (got {value!r})")
        seeds = list(value)
    elif isinstance(value, str):
        text = value.replace(" ", "")
        try:
            bounds = [int(t) for t in text.split("-")] if "-" in text else None
            seeds = [int(t) for t in text.split(",")] if bounds is None else []
        except ValueError:  # (ConfigError is a ValueError too: raise it outside this block)
            raise ConfigError(key, f"must look like 0-63 or 0,1,5 (got {value!r})") from None
        if bounds is not None:
            if len(bounds) != 2 or bounds[1] < bounds[0]:
                raise ConfigError(key, f"a range must run upwards, e.g. 0-63 (got {value!r})")
            seeds = list(range(bounds[0], bounds[1] + 1))
    else:
        raise ConfigError(key, f"must look like 0-63, 0,1,5 or a list of integers (got {value!r})")
    if not seeds or min(seeds) < 0:
        raise ConfigError(key, f"must name seeds >= 0 (got {value!r})")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(key, f"names a seed twice (got {value!r})")
    return seeds
