"""Figure functions: each works on a run and on plain data, and says clearly when data is missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from grokscope.analysis import subsample_steps
from grokscope.report import figures as G
from grokscope.report import fourier_figures as F
from grokscope.report.data import MissingData, load_run_data
from grokscope.report.html import figure_json
from grokscope.report.sections import sections_for

SECTIONS = [s for s in sections_for(["fourier"]) if s.when is None]  # "components" needs a task with components (test_task_zoo)


@pytest.mark.parametrize("sec", SECTIONS, ids=[s.id for s in SECTIONS])
def test_every_figure_with_defaults_on_a_planted_run(planted_run, sec):
    fig = sec.figure(planted_run)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) > 0


def test_figures_accept_plain_data(planted_run):
    d = load_run_data(planted_run)
    final = d.tensors("fourier")
    assert len(G.loss_curves(d.metrics).data) == 4
    assert F.progress_measures(d.progress, key_frequencies=[3, 7]).data
    assert F.embed_fourier_final(d.table("fourier", "embed_fourier"), key_frequencies=[3]).data
    assert F.logit_spectrum(final["logits_fourier_norm"]).data
    assert F.neuron_clusters(final["neuron_freq_frac"]).data
    assert F.attention_patterns(final["attn_pattern"]).data
    assert F.neuron_activations(final["neuron_acts"]).data
    assert F.embedding_circles(d.table("fourier", "circles")).frames


def test_key_frequencies_are_highlighted(planted_run):
    bar = F.embed_fourier_final(planted_run).data[0]
    red = [int(k) for k, c in zip(bar.x, bar.marker.color) if c == F.KEY_COLOR]
    assert red == [3, 7]


def test_animations_are_subsampled_and_end_at_the_last_checkpoint(planted_run):
    d = load_run_data(planted_run)
    last = int(d.table("fourier", "circles")["step"].max())
    for fig in (F.embedding_circles(d, max_frames=10), F.embed_fourier_animation(d, max_frames=10)):
        names = [f.name for f in fig.frames]
        assert 2 <= len(names) <= 10 and names[-1] == str(last)
        assert len(fig.layout.sliders[0].steps) == len(names)
    # frames carry positions only: one (x, y) pair per trace, styling stays on the figure
    frame = F.embedding_circles(d, max_frames=5).frames[0]
    assert len(frame.data) == 2 * 2 and frame.data[1].marker.color is None


def test_circles_follow_k_times_x(planted_run):
    """The ring line visits tokens in the order k*x mod p, so a formed circle draws a polygon."""
    d = load_run_data(planted_run)
    fig = F.embedding_circles(d)
    ring = fig.data[0]  # k = 3 ring at the final step
    angles = np.unwrap(np.arctan2(np.asarray(ring.y), np.asarray(ring.x)))
    assert np.all(np.diff(angles) > 0) or np.all(np.diff(angles) < 0)


def test_subsample_steps():
    steps = list(range(0, 4200, 10))
    sub = subsample_steps(steps, 40)
    assert len(sub) == 40 and sub[0] == 0 and sub[-1] == 4190 and sub == sorted(sub)
    assert subsample_steps([5, 1, 1, 3], 40) == [1, 3, 5]


def test_arrays_are_embedded_as_compact_float32(planted_run):
    text = figure_json(F.attention_patterns(planted_run))
    assert '"dtype":"f4"' in text and "bdata" in text


def test_missing_analysis_raises_missing_data_with_a_hint(unanalysed_run):
    with pytest.raises(MissingData, match="grokscope analyze"):
        F.progress_measures(unanalysed_run)
    with pytest.raises(MissingData):
        F.logit_spectrum(unanalysed_run)
    assert G.loss_curves(unanalysed_run).data  # metrics alone suffice


def test_no_key_frequencies(planted_run, tmp_path):
    from planted_runs import plant_run

    run = plant_run(tmp_path / "rand", keys=())
    d = load_run_data(run)
    with pytest.raises(MissingData, match="no key frequencies"):
        F.embedding_circles(d)
    fig = F.progress_measures(d)
    assert any(a.text == "no key frequencies" for a in fig.layout.annotations)


def test_comparison_helpers(planted_run, unanalysed_run):
    table = G.headline_table([planted_run, unanalysed_run])
    assert list(table["grokking_step"].isna()) == [False, True]
    assert len(G.compare_curves([planted_run, unanalysed_run]).data) == 6
    assert F.compare_progress([planted_run, unanalysed_run]).data
    with pytest.raises(MissingData):
        F.compare_progress([unanalysed_run])


def test_empty_inputs_raise_missing_data():
    with pytest.raises(MissingData):
        G.loss_curves(pd.DataFrame({"step": [0], "train_loss": [1.0], "test_loss": [1.0]}))
    with pytest.raises(MissingData):
        F.embedding_circles(pd.DataFrame(columns=["step", "freq", "token", "cos", "sin"]))
    with pytest.raises(MissingData):
        F.attention_patterns(np.zeros((0, 3, 3)))


def test_step_axes_end_at_the_last_step_and_toggle_with_their_labels(planted_run):
    d = load_run_data(planted_run)
    last = int(d.metrics["step"].max())
    fig = G.loss_curves(d)
    assert fig.layout.xaxis.type == "linear" and list(fig.layout.xaxis.range) == [0, last]
    menu = fig.layout.updatemenus[0]
    assert [b.label for b in menu.buttons] == ["linear steps", "log steps"]
    log_args = menu.buttons[1].args[0]
    assert log_args["xaxis.type"] == "log" and log_args["xaxis2.type"] == "log"
    assert log_args["xaxis.range"][1] == pytest.approx(np.log10(last))
    grok = d.summary["grokking_step"]
    label = next(i for i, a in enumerate(fig.layout.annotations) if "grokking" in (a.text or ""))
    assert fig.layout.annotations[label].x == grok  # linear: the step itself ...
    assert log_args[f"annotations[{label}].x"] == pytest.approx(np.log10(grok))  # ... log: its log10


def test_comparisons_mark_each_runs_grokking_step(planted_run, unanalysed_run):
    fig = G.compare_curves([planted_run, unanalysed_run])
    marks = [s for s in fig.layout.shapes if s.line.dash == "dash"]
    # both planted runs grok (at the same step): one line per run in the run's colour, on both panels
    assert len(marks) == 4 and len({s.line.color for s in marks}) == 2 and {s.xref for s in marks} == {"x", "x2"}


def test_headline_table_adds_the_fields_that_differ(planted_run, tmp_path):
    from planted_runs import plant_run

    other = plant_run(tmp_path / "lr", name="other lr")
    import json

    doc = json.loads((other / "config.json").read_text())
    doc["config"]["optim"]["lr"] = 0.01
    (other / "config.json").write_text(json.dumps(doc))
    table = G.headline_table([planted_run, other])
    assert list(table["optim.lr"]) == [0.003, 0.01] and "model.d_model" not in table  # only what differs
