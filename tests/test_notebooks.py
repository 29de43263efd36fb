"""Every notebook in examples/ runs top to bottom on a small run (issue 16), so none rots.

The notebooks read their run size from GROKSCOPE_* environment variables (defaults: the real
experiment); here each gets the tiny preset, a few hundred epochs and a fresh folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("GROKSCOPE_PRESET", "tiny")
    monkeypatch.setenv("GROKSCOPE_EPOCHS", "300")
    monkeypatch.setenv("GROKSCOPE_RUN", str(tmp_path / "run"))
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(shown) >= 5  # loss curves, progress measures, and the three Fourier figures rendered inline
    assert (tmp_path / "run" / "analysis" / "summary.json").is_file()
