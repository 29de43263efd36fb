"""Shared fixtures: small real runs, trained once per test session."""

from __future__ import annotations

import pytest

import grokscope


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A real run of the `tiny` preset (p = 23, 300 epochs, seconds): memorises its training set."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = grokscope.get_preset("tiny").replace(**{"name": "tiny <script>alert('x')</script>"})
    return grokscope.train(cfg, out)
