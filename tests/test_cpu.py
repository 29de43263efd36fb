"""CPU process settings: denormals flushed on every torch thread inside the block, restored after it."""

import os
import subprocess
import sys

import pytest
import torch

from grokscope.cpu import flush_denormals, keep_freed_memory

TINY = 1e-40  # a float32 denormal


def nonzero_share(threads: int) -> float:
    """x * 1.0 over a tensor of denormals, split across `threads` threads: the share that stays non-zero."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.full((1 << 21,), TINY)
        return (x * 1.0 != 0).double().mean().item()
    finally:
        torch.set_num_threads(before)


def test_flush_denormals_reaches_every_thread_and_is_undone() -> None:
    assert nonzero_share(2) == 1.0  # the pool exists now, with the default mode
    with flush_denormals() as ok:
        if not ok:
            pytest.skip("this CPU has no flush-to-zero mode")
        assert nonzero_share(2) == 0.0  # the existing worker too, not only the calling thread
        assert nonzero_share(3) == 0.0  # a worker created inside the block inherits the mode
    assert nonzero_share(2) == 1.0 and nonzero_share(3) == 1.0


def test_keep_freed_memory_is_harmless_to_repeat() -> None:
    assert keep_freed_memory() == keep_freed_memory()


def test_the_ops_settled_before_training_are_mkl_code_and_all_exist() -> None:
    """settle_vector_math rests on exp being MKL's code where torch has MKL: MKL's mode changes its bits."""
    from grokscope.cpu import VML_OPS, mkl_mode, settle_vector_math

    settle_vector_math()  # every name is a tensor method that runs
    assert all(callable(getattr(torch.ones(1), op)) for op in VML_OPS)
    if mkl_mode() is None:
        pytest.skip("torch is built without a reachable MKL")
    code = ("import hashlib, torch; x = torch.linspace(-20, 0, 10007, dtype=torch.float64); "
            "print(hashlib.sha256(x.exp().numpy().tobytes()).hexdigest())")
    digests = {mode: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    env={**os.environ, "MKL_CBWR": mode}).stdout for mode in ("AUTO", "COMPATIBLE")}
    if digests["AUTO"] == digests["COMPATIBLE"]:  # seen on an AMD EPYC (AVX512): MKL takes one path in both modes
        pytest.skip("MKL computes exp with the same bits in both modes on this CPU")
    assert digests["AUTO"] != digests["COMPATIBLE"]
