"""Write examples/*.ipynb from the cell sources below, outputs empty (run: python scripts/make_notebooks.py).

The notebooks are generated so that their text lives in one reviewable file; tests/test_notebooks.py
executes every notebook in examples/ on a small run.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

SEED004 = [
    ("markdown", """# Seed 004's figures from one run

Nanda et al. (2023), *Progress measures for grokking via mechanistic interpretability*: a 1-layer
transformer learns `(x + y) mod 113` from 30% of the pairs. It memorises first and generalises
thousands of epochs later, by way of a Fourier-multiplication circuit. This notebook trains (or
loads) that run and shows its main figures: losses with the four phases, the progress measures
(restricted and excluded loss, Gini, weight norm), the embedding's key frequencies, the neuron
clusters and the logits' 2D spectrum.

The canonical run (12k epochs) takes minutes on a laptop CPU. The parameters below pick it; the
test suite runs this notebook with a tiny preset instead."""),
    ("code", """import os

PRESET = os.environ.get("GROKSCOPE_PRESET", "nanda2023")  # the canonical config (docs/training.md)
EPOCHS = int(os.environ.get("GROKSCOPE_EPOCHS", "12000"))  # grokked near 8k, cleaned up by 12k
RUN = os.environ.get("GROKSCOPE_RUN", f"runs/{PRESET}-{EPOCHS}")"""),
    ("code", """from pathlib import Path

import grokscope
from grokscope.report import figures, fourier_figures, load_run_data

if not (Path(RUN) / "metrics.parquet").is_file():  # train once; later runs of the notebook load it
    grokscope.train(grokscope.get_preset(PRESET).replace(**{"train.epochs": EPOCHS}), RUN, overwrite=True)
result = grokscope.analyze(RUN)
result"""),
    ("markdown", """## Loss curves and phases
Train and test loss on a log axis, the phases of seed 004 shaded: memorisation, circuit formation,
clean-up (docs/analysis.md gives the rule for each boundary)."""),
    ("code", """data = load_run_data(RUN)
figures.loss_curves(data).show()
{k: v for k, v in result.summary.items() if k.startswith("phases") or k in ("grokking_step", "key_frequencies")}"""),
    ("markdown", """## Progress measures
Restricted loss (only the key frequencies kept) falls before the test loss does; excluded loss
(the key frequencies removed) rises as the circuit forms; the Gini coefficient of the embedding's
Fourier norms rises; the weight norm falls in clean-up."""),
    ("code", """fourier_figures.progress_measures(data).show()"""),
    ("markdown", "## The embedding's Fourier norms, the neuron clusters and the logits' spectrum"),
    ("code", """for figure in (fourier_figures.embed_fourier_final, fourier_figures.neuron_clusters, fourier_figures.logit_spectrum):
    figure(data).show()  # each takes the run's data, or the plain array it plots (docs/report.md)"""),
]

NOTEBOOKS = {"seed004_figures.ipynb": SEED004}


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "markdown" else nbformat.v4.new_code_cell(src)
                for kind, src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        path = ROOT / "examples" / name
        nbformat.write(build(cells), path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
