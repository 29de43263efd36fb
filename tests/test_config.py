import pytest

from grokscope.cli import main
from grokscope.config import ConfigError, RunConfig, parse_set
from grokscope.presets import make_config
from grokscope.presets import PRESETS, get_preset


def test_canonical_preset_matches_design():
    c = get_preset("nanda2023")
    assert (c.task.name, c.task.op, c.task.p, c.task.frac_train, c.task.data_seed, c.task.split) == ("modular", "add", 113, 0.3, 0, "random")
    m = c.model
    assert (m.n_layers, m.d_model, m.n_heads, m.d_head, m.d_mlp, m.act_fn, m.normalization, m.attn_only) == (1, 128, 4, 32, 512, "relu", None, False)
    o = c.optim
    assert (o.name, o.lr, o.weight_decay, o.betas, o.warmup_steps) == ("adamw", 1e-3, 1.0, (0.9, 0.98), 10)
    t = c.train
    assert (t.batch_size, t.seed, t.loss_dtype, t.eval_every, t.device) == (None, 0, "float64", 10, "auto")


def test_round_trip_and_overrides():
    c = make_config(preset="nanda2023", overrides=parse_set(["optim.lr=3e-3", "task.op=sub", "train.batch_size=null"]))
    assert c.optim.lr == 3e-3 and c.task.op == "sub" and c.train.batch_size is None
    assert RunConfig.from_dict(c.to_dict()) == c


def test_every_preset_builds():
    for name in PRESETS:
        get_preset(name).check()


def test_config_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("task:\n  p: 97\noptim:\n  lr: 0.002\n")
    c = make_config(f, overrides={"train.seed": 3})
    assert (c.task.p, c.optim.lr, c.train.seed, c.model.d_model) == (97, 0.002, 3, 128)


MALFORMED = [
    (["--set", "task.p=100", "--set", "task.op=div"], "task.p"),
    (["--set", "task.p=91", "--set", "task.op=mul"], "task.p"),
    (["--set", "task.frac_train=0"], "task.frac_train"),
    (["--set", "task.frac_train=1.5"], "task.frac_train"),
    (["--set", "optim.lr=-1e-3"], "optim.lr"),
    (["--set", "optim.lr=abc"], "optim.lr"),
    (["--set", "task.op=pow"], "task.op"),
    (["--set", "task.name=parity"], "task.name"),
    (["--set", "model.act_fn=tanh"], "model.act_fn"),
    (["--set", "model.d_model=0"], "model.d_model"),
    (["--set", "model.n_layers=1.5"], "model.n_layers"),
    (["--set", "train.batch_size=0"], "train.batch_size"),
    (["--set", "train.loss_dtype=float16"], "train.loss_dtype"),
    (["--set", "optim.betas=[0.9, 1.5]"], "optim.betas"),
    (["--set", "optim.weight_decay=nan"], "optim.weight_decay"),
    (["--set", "task.colour=red"], "task.colour"),
    (["--set", "bogus.key=1"], "bogus.key"),
    (["--set", "noequals"], "--set"),
    (["--preset", "nanda2024"], "--preset"),
    (["--set", "train.device=tpu"], "train.device"),
    (["--set", "model.attn_only=maybe"], "model.attn_only"),
]


@pytest.mark.parametrize("argv,field", MALFORMED)
def test_malformed_configs_get_one_line_and_exit_2(argv, field, capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and field in err and "Traceback" not in err
    assert not out.exists()


def test_bad_yaml_file(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text("task: [unclosed\n")
    assert main(["train", str(f), "--out", str(tmp_path / "r")]) == 2
    assert "CONFIG" in capsys.readouterr().err


def test_unknown_key_in_file(tmp_path):
    f = tmp_path / "c.json"
    f.write_text('{"optim": {"learning_rate": 0.1}}')
    with pytest.raises(ConfigError, match="optim.learning_rate: unknown key"):
        make_config(f)


def test_repr_shows_only_what_differs_from_the_canonical_run():
    assert repr(RunConfig()) == "RunConfig()"
    assert repr(get_preset("quick")) == "RunConfig(task.p=31, task.frac_train=0.5, optim.lr=0.003, train.epochs=4000)"


@pytest.mark.slow
def test_quick_preset_groks(tmp_path):
    """The `quick` preset shows grokking within its budget (~20 s on a 2-core CPU)."""
    import grokscope

    m = grokscope.load_run(grokscope.train(get_preset("quick").replace(**{"train.progress": False}), tmp_path / "q")).metrics
    assert m.train_acc[m.step == 100].item() == 1.0  # memorised early ...
    assert m.test_acc[m.step == 100].item() < 0.5 and m.test_acc.iloc[-1] >= 0.99  # ... generalised late


def test_the_example_config_file_is_the_quick_preset():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "quick.yaml"
    assert make_config(path).replace(name=None) == get_preset("quick")
