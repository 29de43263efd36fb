"""CPU process settings: denormals flushed on every torch thread inside the block, restored after it."""

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
