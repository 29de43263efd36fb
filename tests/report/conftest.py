"""Report fixtures: the tiny real run analysed, a copy without analysis, and a planted run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from planted_runs import plant_run


@pytest.fixture(scope="session")
def planted_run(tmp_path_factory) -> Path:
    """A small planted run (p = 23, keys 3 and 7) whose name tries to inject HTML."""
    return plant_run(tmp_path_factory.mktemp("planted") / "run", name="planted <script>alert('x')</script> & co")


@pytest.fixture(scope="session")
def analysed_tiny_run(tiny_run, tmp_path_factory) -> Path:
    """A copy of the real tiny run with the real analysis written into it (skipped if analysis is absent)."""
    analysis = pytest.importorskip("grokscope.analysis")
    out = tmp_path_factory.mktemp("analysed") / "tiny"
    shutil.copytree(tiny_run, out)
    analysis.analyze(out)
    return out


@pytest.fixture(scope="session")
def unanalysed_run(tmp_path_factory) -> Path:
    """A run directory without analysis/ (what a user has right after training); its name holds HTML too."""
    return plant_run(tmp_path_factory.mktemp("unanalysed") / "run", name="fresh <i>run</i>", analysis=False)
