"""The seams, pinned without the real task: a toy task and a toy analysis registered from here go
through train -> analyze -> report; engines that decline are skipped; interventions are config."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

import grokscope
from grokscope.analysis import ANALYSES, AnalysisOutput, register_analysis, unregister_analysis
from grokscope.config import TASK_CONFIGS, ConfigError, TaskShape
from grokscope.engine import GenericEngine, select_engine
from grokscope.models import make_model
from grokscope.report.sections import RUN_SECTIONS, Section, register_section
from grokscope.tasks import TASKS, Batch, Task, make_task, register_task


# --- a two-line toy task: copy x at position 0, predict (x + y) mod V at position 1 -------------

@dataclass(frozen=True)
class ToyConfig:
    name: str = "toy"
    V: int = 7
    frac_train: float = 0.8
    data_seed: int = 0

    def check(self) -> None:
        if self.V < 2:
            raise ConfigError("task.V", f"must be an integer >= 2 (got {self.V})")

    def shape(self) -> TaskShape:
        return TaskShape(self.V, self.V, 2, round(self.frac_train * self.V**2))


@dataclass(frozen=True)
class ToyTask:
    name: ClassVar[str] = "toy"
    cfg: ToyConfig
    train_idx: np.ndarray
    test_idx: np.ndarray

    d_vocab = property(lambda self: self.cfg.V)
    d_vocab_out = property(lambda self: self.cfg.V)
    n_ctx = property(lambda self: 2)
    target_positions = property(lambda self: (0, 1))
    n_train = property(lambda self: len(self.train_idx))
    n_test = property(lambda self: len(self.test_idx))

    @classmethod
    def from_config(cls, cfg: ToyConfig) -> "ToyTask":
        perm = np.random.default_rng(cfg.data_seed).permutation(cfg.V**2)
        n = cfg.shape().n_train
        return cls(cfg, np.sort(perm[:n]), np.sort(perm[n:]))

    @classmethod
    def from_split(cls, cfg: ToyConfig, split: dict) -> "ToyTask":
        return cls(cfg, np.asarray(split["train"]), np.asarray(split["test"]))

    def batch(self, split: str, idx=None) -> Batch:
        cells = torch.as_tensor(self.train_idx if split == "train" else self.test_idx)
        x, y = cells // self.cfg.V, cells % self.cfg.V
        return Batch(torch.stack([x, y], -1), torch.stack([x, (x + y) % self.cfg.V], -1), torch.ones(len(cells), dtype=torch.bool))

    def split_dict(self) -> dict:
        return {"train": self.train_idx.tolist(), "test": self.test_idx.tolist()}

    def describe(self) -> dict:
        return {"name": self.name, "V": self.cfg.V}


class ToyNorm:
    """A toy analysis: the squared weight norm per checkpoint."""

    name = "toy_norm"
    headline = ("toy_final_sq_norm",)

    @classmethod
    def applies_to(cls, run) -> str | None:
        return None if run.task.name == "toy" else "not the toy task"

    def __init__(self, run, steps, scale: float = 1.0) -> None:
        self.scale = scale

    def measure(self, step: int, params: dict) -> dict:
        return {"step": step, "toy_sq_norm": self.scale * float(sum(t.double().pow(2).sum() for t in params.values()))}

    def finalize(self, records: list[dict]) -> AnalysisOutput:
        df = pd.DataFrame(records)
        return AnalysisOutput({"toy_final_sq_norm": float(df.toy_sq_norm.iloc[-1]), "unlisted": 1},
                              {"progress": df}, {"last_norm": torch.tensor([df.toy_sq_norm.iloc[-1]])})


def toy_figure(data) -> go.Figure:
    df = data.table("toy_norm", "progress")
    return go.Figure(go.Scatter(x=df.step, y=df.toy_sq_norm))


@pytest.fixture
def toy_registered():
    register_task("toy", ToyConfig, ToyTask)
    register_analysis(ToyNorm)
    register_section("toy_norm", Section("toy_norm_curve", "Toy weight norm", toy_figure, "the toy analysis"))
    yield
    TASKS.pop("toy"), TASK_CONFIGS.pop("toy")
    unregister_analysis("toy_norm")
    RUN_SECTIONS.pop("toy_norm")


def toy_config(**overrides):
    base = {"task.name": "toy", "model.d_model": 16, "model.n_heads": 2, "model.d_head": 8, "model.d_mlp": 32,
            "optim.lr": 3e-3, "train.epochs": 30, "train.checkpoint_every": 10, "train.progress": False}
    return grokscope.RunConfig().replace(**{**base, **overrides})


def test_toy_task_goes_through_train_analyze_report(toy_registered, tmp_path):
    cfg = toy_config()
    assert cfg.task == ToyConfig() and isinstance(make_task(cfg.task), Task)
    path = grokscope.train(cfg, tmp_path / "toy")
    run = grokscope.load_run(path)
    assert run.meta["engine"] == "generic"  # the modular fast engine declined the 2-token task
    assert isinstance(run.task, ToyTask) and run.metrics.train_loss.iloc[-1] < run.metrics.train_loss.iloc[0]
    # two target positions: the loss is the mean over both, accuracy needs both right
    batch = run.task.batch("train")
    logits = GenericEngine(cfg.model, run.task, make_model(cfg, run.task)).logits(run.stacked_params(), batch.inputs[None])
    assert logits.shape == (1, len(batch), 2, 7)
    acc = float((logits.argmax(-1) == batch.targets).all(-1).double().mean())
    assert acc == pytest.approx(run.metrics.train_acc.iloc[-1])

    result = grokscope.analyze(path, scale=2.0)
    s = result.summary
    # the Fourier analysis does not apply; numerics applies to every run
    assert s["analyses"] == ["numerics", "toy_norm"] and "key_frequencies" not in s
    assert s["toy_final_sq_norm"] > 0 and "unlisted" not in s  # only headline keys reach the run level
    assert json.loads((path / "analysis" / "toy_norm" / "summary.json").read_text())["unlisted"] == 1
    sq = sum(float(t.double().pow(2).sum()) for t in run.params().values())
    assert s["toy_final_sq_norm"] == pytest.approx(2.0 * sq)
    assert sorted(run.analyses) == ["numerics", "toy_norm"] and run.analysis("toy_norm").tensors["last_norm"].item() == pytest.approx(2 * sq)
    assert run.analysis().tables["progress"]["step"].tolist() == run.steps

    html = grokscope.report(path).read_text()
    assert 'id="toy_norm_curve"' in html and "Toy weight norm" in html
    assert "Fourier norms" not in html  # no section of an analysis that does not apply
    with pytest.raises(ConfigError, match="no analysis takes this option"):
        grokscope.analyze(path, nonsense=1)
    with pytest.raises(ConfigError, match="'fourier' does not apply"):
        grokscope.analyze(path, analyses=["fourier"])


def test_family_keys_and_errors(toy_registered):
    cfg = toy_config()
    assert cfg.to_dict()["task"] == {"name": "toy", "V": 7, "frac_train": 0.8, "data_seed": 0}
    back = grokscope.RunConfig.from_dict(cfg.to_dict())
    assert back == cfg
    with pytest.raises(ConfigError, match=r"task.V: must be an integer >= 2"):
        cfg.replace(**{"task.V": 1})
    with pytest.raises(ConfigError, match=r"task.p: unknown key \(allowed: name, V, frac_train, data_seed\)"):
        cfg.replace(**{"task.p": 5})
    with pytest.raises(ConfigError, match=r"task.name: unknown task 'nope' \(allowed: modular, .*toy\)"):
        cfg.replace(**{"task.name": "nope"})
    # switching back to the modular family starts from its defaults
    assert cfg.replace(**{"task.name": "modular"}).task.p == 113


def test_an_engine_that_declines_is_skipped(toy_registered):
    class Picky:
        name = "picky"
        built = False

        @classmethod
        def supports(cls, model_cfg, task):
            return "picky declines everything"

        def __init__(self, *args):
            Picky.built = True

    cfg = toy_config()
    task = make_task(cfg.task)
    model = make_model(cfg, task)
    engine = select_engine(cfg, task, model, engines=[Picky, GenericEngine])
    assert isinstance(engine, GenericEngine) and not Picky.built
    with pytest.raises(ConfigError, match=r"train.engine: 'fast' does not support this config \(the task is not"):
        select_engine(cfg.replace(**{"train.engine": "fast"}), task, model)
    modular = grokscope.get_preset("tiny")
    assert select_engine(modular, make_task(modular.task), make_model(modular, make_task(modular.task))).name == "fast"


# --- interventions --------------------------------------------------------------------------

def test_lr_multiplier_is_config_and_changes_the_logged_lr(tmp_path):
    cfg = grokscope.get_preset("tiny").replace(**{
        "train.epochs": 40, "train.progress": False,
        "interventions": [{"kind": "lr_multiplier", "at_step": 20, "factor": 0.1}]})
    path = grokscope.train(cfg, tmp_path / "run")
    stored = json.loads((path / "config.json").read_text())["config"]["interventions"]
    assert stored == [{"kind": "lr_multiplier", "at_step": 20, "factor": 0.1}]
    m = grokscope.load_run(path).metrics.set_index("step")
    assert m.lr[10] == pytest.approx(3e-3) and m.lr[20] == pytest.approx(3e-4) and m.lr[40] == pytest.approx(3e-4)
    assert grokscope.load_run(path).config.interventions == cfg.interventions


@pytest.mark.parametrize("value, key", [
    ("[{kind: nope}]", "interventions.0.kind"),
    ("[{kind: lr_multiplier, factor: -1}]", "interventions.0.factor"),
    ("[{kind: grokfast_ema, alpha: 1.5}]", "interventions.0.alpha"),
    ("[{kind: lr_multiplier, when: 3}]", "interventions.0.when"),
    ("5", "interventions"),
])
def test_bad_interventions_name_the_field(value, key, capsys, tmp_path):
    from grokscope.cli import main

    assert main(["train", "--preset", "tiny", "--set", f"interventions={value}", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"grokscope: error: {key}:") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()
