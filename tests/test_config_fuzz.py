"""Malformed configs, fuzzed: every one is refused with ONE line naming the field, exit 2, and no run directory.

Each case changes one field of a valid config (the `tiny` preset) to a value that must be refused: a
wrong type, an out-of-range value, an unknown field, a non-prime p for div/mul, frac_train outside
(0, 1], a negative lr, an unknown task or op... The bulk goes through the Python API and `cli.main`
in-process; a few through a real `grokscope` subprocess. Each test asserts how many cases it tried.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import tempfile
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grokscope.cli import main
from grokscope.config import SECTIONS, ConfigError, RunConfig, _parse_scalar, is_prime
from grokscope.presets import make_config
from grokscope.presets import get_preset

BASE = get_preset("tiny").replace(**{"train.epochs": 2, "train.progress": False}).to_dict()
N_TRAIN = round(0.5 * 23 * 23)  # the tiny preset's training examples
SETTINGS = dict(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))

# -- values that no field of a given kind accepts ---------------------------------------------

junk_text = st.text(max_size=12)
containers = st.one_of(st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _not_a(kind):
    def check(s: str) -> bool:
        try:
            kind(s)
        except ValueError:
            return True
        return False
    return check


not_int_text = junk_text.filter(_not_a(int))
not_float_text = junk_text.filter(_not_a(float))
non_integral = st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not (math.isfinite(x) and x.is_integer()))

wrong_for_int = st.one_of(st.booleans(), non_integral, not_int_text, containers)
wrong_for_float = st.one_of(st.booleans(), st.just(float("nan")), not_float_text, containers, st.none())
wrong_for_bool = st.one_of(st.integers(), st.floats(), containers, st.none(),
                           junk_text.filter(lambda s: s.lower() not in ("true", "false")))
wrong_for_str = st.one_of(st.integers(), st.floats(), st.booleans(), containers, st.none())


def literal_junk(allowed):
    return st.one_of(st.integers(), st.floats(), st.booleans(), containers, junk_text).filter(lambda v: v not in allowed)


def ints(lo=None, hi=None):
    return st.integers(min_value=lo, max_value=hi)


def floats(lo=None, hi=None, **kw):
    return st.floats(min_value=lo, max_value=hi, **kw)


OUT_OF_RANGE = {
    "task.p": st.one_of(ints(hi=2), ints(lo=4097)),
    "task.frac_train": st.one_of(floats(hi=0.0), floats(lo=1.0, exclude_min=True), st.just(math.inf), st.just(-math.inf)),
    "task.data_seed": ints(hi=-1),
    "model.n_layers": st.one_of(ints(hi=0), ints(lo=17)),
    "model.d_model": st.one_of(ints(hi=0), ints(lo=10**9)),
    "model.n_heads": st.one_of(ints(hi=0), ints(lo=10**9)),
    "model.d_head": st.one_of(ints(hi=0), ints(lo=10**9)),
    "model.d_mlp": st.one_of(ints(hi=0), ints(lo=10**9)),
    "optim.lr": st.one_of(floats(hi=0.0), st.just(math.inf)),  # negative, zero, infinite
    "optim.weight_decay": st.one_of(floats(hi=-1e-300), st.just(math.inf)),  # (-0.0 >= 0 is valid)
    "optim.eps": st.one_of(floats(hi=0.0), st.just(math.inf)),
    "optim.warmup_steps": ints(hi=-1),
    "optim.betas": st.one_of(
        st.tuples(floats(0.0, 0.999), st.one_of(floats(hi=-1e-300), floats(lo=1.0))).map(list),
        st.lists(floats(0.0, 0.5), max_size=5).filter(lambda b: len(b) != 2),
        st.lists(st.one_of(junk_text.filter(_not_a(float)), st.booleans(), st.none()), min_size=2, max_size=2),
        st.integers(), st.floats()),
    "train.epochs": ints(hi=0),
    "train.batch_size": st.one_of(ints(hi=0), ints(lo=N_TRAIN + 1)),
    "train.seed": st.one_of(ints(hi=-1), ints(lo=2**64)),
    "train.eval_every": ints(hi=0),
    "train.checkpoint_every": ints(hi=0),
    "train.device": junk_text.filter(lambda d: d not in ("auto", "cpu", "cuda") and not (d.startswith("cuda:") and d[5:].isdigit())),
}


def _fields():
    """(key, type hint) of every config field."""
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            yield f"{section}.{f.name}", hints[f.name]


def wrong_values(hint):
    """Values of the wrong type for a field of type `hint`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]: null is fine, the wrong types of X are not
        (inner,) = [a for a in args if a is not type(None)]
        return wrong_values(inner).filter(lambda v: v is not None and not (isinstance(v, str) and v.lower() in ("null", "none", "~")))
    if origin is typing.Literal:
        return literal_junk(args)
    if origin is tuple:  # (a string is parsed as YAML: "[0.9, 0.5]" is a valid pair)
        return st.one_of(st.booleans(), junk_text.filter(lambda s: not isinstance(_parse_scalar(s), list)),
                         st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))
    return {int: wrong_for_int, float: wrong_for_float, bool: wrong_for_bool, str: wrong_for_str}[hint]


FIELD_CASES = [(key, wrong_values(hint)) for key, hint in _fields()] + list(OUT_OF_RANGE.items())


def _set(data: dict, key: str, value) -> dict:
    section, leaf = key.split(".", 1)
    data[section][leaf] = value
    return data


@st.composite
def bad_config(draw):
    """(config dict, the field that must be named, a label for counting)."""
    data = yaml.safe_load(yaml.safe_dump(BASE))  # a deep copy
    kind = draw(st.sampled_from(["field"] * 6 + ["non_prime", "unknown_field", "unknown_section", "not_a_mapping", "top_level"]))
    if kind == "field":
        key, values = draw(st.sampled_from(FIELD_CASES))
        return _set(data, key, draw(values)), key, kind
    if kind == "non_prime":
        op = draw(st.sampled_from(["div", "mul"]))
        p = draw(ints(3, 4096).filter(lambda n: not is_prime(n)))
        return _set(_set(data, "task.op", op), "task.p", p), "task.p", kind
    if kind == "unknown_field":
        section = draw(st.sampled_from(list(SECTIONS)))
        names = {f.name for f in dataclasses.fields(SECTIONS[section])}
        name = draw(st.text(min_size=1, max_size=10).filter(lambda n: n not in names))
        return _set(data, f"{section}.{name}", draw(st.integers())), f"{section}.{name}", kind
    if kind == "unknown_section":
        name = draw(st.text(min_size=1, max_size=10).filter(lambda n: n not in (*SECTIONS, "name")))
        data[name] = {"x": 1}
        return data, name, kind
    if kind == "not_a_mapping":
        section = draw(st.sampled_from(list(SECTIONS)))
        data[section] = draw(st.one_of(st.integers(), junk_text, st.lists(st.integers(), max_size=3), st.booleans()))
        return data, section, kind
    return draw(st.one_of(st.lists(st.integers(), max_size=3), junk_text, st.integers())), "config", kind


def assert_one_line_naming(message: str, key: str) -> None:
    assert len(message.strip().splitlines()) == 1, message
    assert "Traceback" not in message
    # rstrip only: a key may itself start with whitespace (e.g. an unknown top-level key " ")
    assert message.rstrip("\n").split("grokscope: error: ", 1)[-1].startswith(f"{key}: ".translate(LINE_BREAKS)), (key, message)


LINE_BREAKS = {c: repr(chr(c))[1:-1] for c in (10, 11, 12, 13, 28, 29, 30, 133, 0x2028, 0x2029)}


# -- the Python API ---------------------------------------------------------------------------

def test_fuzz_python_api_rejects_every_malformed_config():
    tried: list[str] = []

    @settings(max_examples=500, **SETTINGS)
    @given(bad_config())
    def check(case):
        data, key, kind = case
        tried.append(kind)
        with pytest.raises(ConfigError) as err:
            RunConfig.from_dict(data)
        assert err.value.key == key
        assert_one_line_naming(str(err.value), key)

    check()
    assert len(tried) >= 450 and set(tried) == {"field", "non_prime", "unknown_field", "unknown_section", "not_a_mapping", "top_level"}
    print(f"\nPython API: {len(tried)} malformed configs refused ({ {k: tried.count(k) for k in sorted(set(tried))} })")


# (key, bad value) pairs: a field, then one of its malformed values
BAD_FIELD_VALUES = st.sampled_from(FIELD_CASES).flatmap(lambda kv: st.tuples(st.just(kv[0]), kv[1]))


def test_fuzz_overrides_reject_every_bad_field():
    """make_config(preset, overrides) as the CLI's --set uses it."""
    tried = 0

    @settings(max_examples=300, **SETTINGS)
    @given(BAD_FIELD_VALUES)
    def check(kv):
        nonlocal tried
        key, value = kv
        tried += 1
        with pytest.raises(ConfigError) as err:
            make_config(preset="tiny", overrides={key: value})
        assert err.value.key == key
        assert_one_line_naming(str(err.value), key)

    check()
    assert tried >= 250
    print(f"\noverrides: {tried} bad values refused")


# -- the CLI, in-process ----------------------------------------------------------------------

def _yaml_scalar(value) -> str:
    """A --set value that the CLI parses back to exactly `value`."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").removesuffix("...").strip("\n")


def test_fuzz_cli_set_gives_one_line_exit_2_and_no_run_directory(capsys):
    tried = 0

    @settings(max_examples=250, **SETTINGS)
    @given(BAD_FIELD_VALUES)
    def check(kv):
        nonlocal tried
        key, value = kv
        text = _yaml_scalar(value)
        if yaml.safe_load(text) != value and not (isinstance(value, float) and math.isnan(value)):
            return  # not representable on a command line as this exact value
        tried += 1
        capsys.readouterr()
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            assert main(["train", "--preset", "tiny", "--set", f"{key}={text}", "--out", str(out)]) == 2
            assert not out.exists()
        captured = capsys.readouterr()
        assert captured.out == ""
        assert_one_line_naming(captured.err, key)

    check()
    assert tried >= 150
    print(f"\nCLI --set: {tried} bad values refused with exit 2")


def test_fuzz_cli_config_files_give_one_line_exit_2_and_no_run_directory(capsys):
    tried = 0

    @settings(max_examples=200, **SETTINGS)
    @given(bad_config())
    def check(case):
        nonlocal tried
        data, key, kind = case
        tried += 1
        capsys.readouterr()
        with tempfile.TemporaryDirectory() as tmp:
            cfg, out = Path(tmp) / "bad.yaml", Path(tmp) / "run"
            cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
            assert main(["train", str(cfg), "--out", str(out)]) == 2
            assert not out.exists()
        err = capsys.readouterr().err
        # a file that is not a mapping is named as CONFIG (the file), the rest by their field
        assert_one_line_naming(err, "CONFIG" if key == "config" and not isinstance(data, dict) else key)

    check()
    assert tried >= 150
    print(f"\nCLI config files: {tried} malformed files refused with exit 2")


BROKEN_YAML = [
    "task: {p: 23\n", "task:\n  p: [1, 2\n", "optim:\n\tlr: 0.1\n", ": : :\n", "task: &a [*a\n", "'unterminated\n",
    "task:\n  p: 23\n p: 24\n", "{{{{\n", "- a\nb: c\n", "%YAML 9.9\n---\na: 1\n", "task: !!python/object:os.system ls\n",
]


def _broken(text: str) -> bool:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return True
    return data is not None and not isinstance(data, dict)


def test_broken_yaml_files_give_one_line_naming_the_file(capsys):
    tried = 0

    def check(content: bytes | str) -> None:
        nonlocal tried
        tried += 1
        capsys.readouterr()
        with tempfile.TemporaryDirectory() as tmp:
            cfg, out = Path(tmp) / "broken.yaml", Path(tmp) / "run"
            cfg.write_bytes(content if isinstance(content, bytes) else content.encode())
            with pytest.raises(ConfigError) as err:
                make_config(cfg)
            assert err.value.key == "CONFIG" and str(cfg) in str(err.value)
            assert main(["train", str(cfg), "--out", str(out)]) == 2
            assert not out.exists()
            line = capsys.readouterr().err
            assert_one_line_naming(line, "CONFIG")
            assert str(cfg) in line

    for text in BROKEN_YAML:
        assert _broken(text), text
        check(text)
    for raw in (b"\xff\xfe\x00t\x00a", b"task:\n  p: \xe9\n"):  # not UTF-8
        check(raw)

    @settings(max_examples=150, **SETTINGS)
    @given(st.text(alphabet=st.sampled_from(list("{}[]:-,&*!|>'\"%@` \n\tab1")), max_size=30).filter(_broken))
    def fuzz(text):
        check(text)

    fuzz()
    assert tried >= 100
    print(f"\nbroken YAML: {tried} files refused with exit 2")


def test_missing_or_unreadable_config_file(tmp_path, capsys):
    for path in (tmp_path / "nope.yaml", tmp_path):  # missing; a directory
        assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
        assert_one_line_naming(capsys.readouterr().err, "CONFIG")
        assert not (tmp_path / "run").exists()


# -- the real command line, a sample ----------------------------------------------------------

@pytest.mark.parametrize("args, key", [
    (["--set", "task.op=div", "--set", "task.p=25"], "task.p"),
    (["--set", "optim.lr=-0.001"], "optim.lr"),
    (["--set", "model.wings=2"], "model.wings"),
    ("BROKEN_FILE", "CONFIG"),
])
def test_real_cli_subprocess_sample(tmp_path, args, key):
    if args == "BROKEN_FILE":
        (tmp_path / "c.yaml").write_text("task: {p: 23\n")
        args = [str(tmp_path / "c.yaml")]
    else:
        args = ["--preset", "tiny", *args]
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "grokscope.cli", "train", *args, "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert_one_line_naming(proc.stderr, key)
    assert not out.exists()
