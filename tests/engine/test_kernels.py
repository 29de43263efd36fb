"""kernels.fastest: equivalent formulations timed once per machine; a choice never changes a result."""

from __future__ import annotations

import json
import time

import pytest
import torch

from grokscope.config import ModelConfig, ModularConfig
from grokscope.engine import kernels
from grokscope.engine.modular_fast import ModularFastEngine
from grokscope.tasks.modular import ModularTask


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(kernels, "CACHE", tmp_path / "kernels.json")
    monkeypatch.setattr(kernels, "_chosen", {})
    monkeypatch.delenv("GROKSCOPE_KERNELS", raising=False)
    return tmp_path / "kernels.json"


def test_the_fastest_equal_variant_is_chosen_and_cached(cache):
    x = torch.arange(6.0)
    calls = {"slow": 0, "quick": 0}

    def slow():
        calls["slow"] += 1
        time.sleep(0.003)
        return x * 2

    def quick():
        calls["quick"] += 1
        return x + x

    assert kernels.fastest("t", {"slow": slow, "quick": quick}, ((6,),)) == "quick"
    stored = json.loads(cache.read_text())
    assert list(stored.values()) == ["quick"] and "threads" in next(iter(stored))
    kernels._chosen.clear()  # a new process: the cached choice is used, nothing is timed again
    before = dict(calls)
    assert kernels.fastest("t", {"slow": slow, "quick": quick}, ((6,),)) == "quick" and calls == before


def test_a_variant_with_another_result_is_never_chosen(cache):
    x = torch.arange(6.0)

    def wrong():
        return x + 1e-7  # faster, but not bit-identical

    def right():
        time.sleep(0.002)
        return x.clone()

    assert kernels.fastest("u", {"right": right, "wrong": wrong}, ()) == "right"


def test_off_takes_the_first(cache, monkeypatch):
    monkeypatch.setenv("GROKSCOPE_KERNELS", "off")
    assert kernels.fastest("v", {"a": lambda: torch.zeros(1), "b": lambda: torch.zeros(1)}, ()) == "a"
    assert not cache.exists()


@pytest.mark.parametrize("members", [1, 3])
def test_d_pre_formulations_are_bit_identical(cache, members):
    cfg = ModelConfig(d_model=32, n_heads=2, d_head=16, d_mlp=64)
    engine = ModularFastEngine(cfg, ModularTask.from_config(ModularConfig(p=23)))
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(members, 50, 23, generator=gen)
    W_OU = torch.randn(members, 64, 23, generator=gen)
    outs = {}
    for kind in ("strided_out", "contiguous_b", "fresh"):
        engine._kernels = {(tuple(g.shape), tuple(W_OU.shape), str(g.dtype), "cpu"): kind}
        buf = torch.full((members, 50, 96), float("nan"))
        engine._d_pre(g, W_OU, buf[..., :64])
        outs[kind] = buf[..., :64].clone()
        assert torch.isnan(buf[..., 64:]).all()  # only the pre block is written
    assert torch.equal(outs["strided_out"], torch.bmm(g, W_OU.transpose(1, 2)))
    assert all(torch.equal(o, outs["strided_out"]) for o in outs.values())
