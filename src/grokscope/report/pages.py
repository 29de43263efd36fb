"""The two report pages: one run (summary card + every figure) and a comparison of several runs.

A section whose data is absent shows the reason as a note; a figure that fails for any other
reason is logged and noted too, so one bad file never costs the whole report.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from grokscope.analysis.phases import grokking_step
from grokscope.config import flatten_dict
from grokscope.report import figures as G
from grokscope.report.data import MissingData, RunData
from grokscope.report.html import Page, esc, frame_table, note, table
from grokscope.report.sections import Section, sections_for

log = logging.getLogger(__name__)

def _fmt(v: Any, spec: str = ".4g") -> str:
    if v is None:
        return "–"
    if isinstance(v, (float, np.floating)):
        return format(float(v), spec)
    return str(v)


def _epoch_of(data: RunData, step: int | None) -> int | None:
    m = data.metrics
    if step is None or m is None or "epoch" not in m:
        return None
    row = m.loc[m["step"] == step, "epoch"]
    return int(row.iloc[0]) if len(row) else None


def summary_card(data: RunData) -> str:
    """The run at a glance: task and config on the left, results on the right."""
    cfg = data.config
    task, model, optim, train = (cfg.get(k, {}) for k in ("task", "model", "optim", "train"))
    s = data.summary or {}
    group = s.get("group") or {}
    setup = [
        ("run", data.name),
        ("directory", data.path),
        ("task", G.task_label(task) + (f"  ({group['expression']})" if group.get("expression") else "")),
        *([("training pairs", f"{task.get('frac_train')} ({task.get('split') or 'random'} split, data seed {task.get('data_seed')})")]
          if "frac_train" in task else []),
        *([("training examples", f"{'infinite (fresh every step)' if task['n_train'] is None else task['n_train']}, "
                                 f"{task.get('n_test')} test, data seed {task.get('data_seed')}")] if "n_train" in task else []),
        ("model", G.model_label(model)),
        ("optimiser", f"{optim.get('name')} lr {optim.get('lr')}, weight decay {optim.get('weight_decay')}, "
                      f"betas {optim.get('betas')}"),
        ("training", f"{train.get('epochs')} epochs, batch {train.get('batch_size') or 'full'}, "
                     f"seed {train.get('seed')}"),
    ]
    m = data.metrics
    results: list[tuple[str, Any]] = []
    if m is not None and len(m):
        last = m.iloc[-1]
        results.append(("last logged step", int(last["step"])))
        results.append(("final train / test loss", f"{_fmt(last.get('train_loss'))} / {_fmt(last.get('test_loss'))}"))
        results.append(("final train / test accuracy", f"{_fmt(last.get('train_acc'))} / {_fmt(last.get('test_acc'))}"))
    grok = s.get("grokking_step") if data.summary else (grokking_step(data.metrics) if data.metrics is not None else None)
    epoch = _epoch_of(data, grok)
    results.append(("grokking (test acc >= 0.99)", "not reached" if grok is None else
                    f"step {grok}" + (f" (epoch {epoch})" if epoch is not None and epoch != grok else "")))
    body_notes = ""
    if data.summary:
        times = s.get("grokking_times") or {}
        if times:
            results.append(("test acc 0.5 / 0.9 / 0.99 first at (sustained from)",
                            " / ".join(f"{_fmt(t.get('first'))} ({_fmt(t.get('sustained'))})" for t in times.values())))
        ph = s.get("phases") or {}
        results.append(("phase ends (memorisation / circuit formation / generalisation / clean-up)",
                        " / ".join(_fmt(ph.get(k)) for k in
                                   ("memorization_end", "circuit_formation_end", "generalization_end", "cleanup_end"))))
        if "key_frequencies" in s:  # the Fourier analysis ran (modular tasks)
            results += _fourier_rows(s)
        if "chunks_formed" in s:  # the formation analysis ran (chunked MLPs)
            steps = s.get("formation_steps") or []
            results.append(("chunks formed (formation steps)", f"{s['chunks_formed']} ({', '.join(map(str, steps)) or 'none'})"))
        changes = s.get("component_changes") or {}
        if changes:
            results.append(("phase change per component (steepest step)",
                            ", ".join(f"{k} {_fmt((c or {}).get('steepest'))}" for k, c in changes.items())))
        if "induction_heads" in s:
            results.append(("induction / previous-token heads", f"{', '.join(s['induction_heads']) or 'none'} / "
                                                                 f"{', '.join(s.get('previous_token_heads') or []) or 'none'}"
                                                                 f" (induction score >= threshold from step {_fmt(s.get('induction_step'))})"))
        if "key_irreps" in s:
            counts = {k: v for k, v in (s.get("neuron_irreps") or {}).items() if k != "unclustered"}
            results.append((f"key irreps of {s.get('irrep_group')}", ", ".join(s["key_irreps"]) or "none"))
            results.append(("neurons dominated by one irrep", ", ".join(f"{k}: {v}" for k, v in counts.items()) or "none"))
    else:
        body_notes = note(data.missing.get("summary", "no analysis") + " — the sections that need it are left out.")
    config_rows = table(list(flatten_dict(cfg).items()))
    return (f'<div class="cards"><div>{table(setup)}</div><div>{table(results)}</div></div>{body_notes}'
            f"<details><summary>full configuration</summary>{config_rows}</details>")


def _fourier_rows(s: dict) -> list[tuple[str, Any]]:
    """The summary card's rows of the Fourier analysis (modular tasks)."""
    keys = s.get("key_frequencies") or []
    rows: list[tuple[str, Any]] = [("key frequencies", ", ".join(str(k) for k in keys) if keys else "none (no Fourier structure)")]
    clusters = s.get("neuron_clusters") or {}
    if clusters:
        rows.append(("neuron clusters", ", ".join(f"k={k}: {v}" if k != "unclustered" else f"unclustered: {v}"
                                                  for k, v in clusters.items())))
    rows.append(("single-frequency neurons", _fmt(s.get("frac_neurons_single_frequency"), ".3f")))
    rows.append(("logit fit variance explained", _fmt(s.get("logit_fit_variance_explained"), ".3f")))
    fin = s.get("final") or {}
    rows.append(("restricted loss train / test", f"{_fmt(fin.get('restricted_loss_train'))} / {_fmt(fin.get('restricted_loss_test'))}"))
    rows.append(("excluded loss (train)", _fmt(fin.get("excluded_loss_train"))))
    return rows


def _try_figure(fn: Callable[[], go.Figure], what: str) -> tuple[go.Figure | None, str | None]:
    """(figure, None) or (None, a note for the reader)."""
    try:
        return fn(), None
    except MissingData as err:
        return None, str(err)
    except Exception as err:  # keep the rest of the report
        log.warning("figure %s failed: %s", what, err, exc_info=True)
        return None, f"this figure could not be drawn ({err.__class__.__name__}: {err})"


def _add_sections(page: Page, sections: list[Section], arg: Any, figs: dict[str, go.Figure]) -> None:
    for sec in sections:
        fig, why = _try_figure(lambda: sec.figure(arg), sec.id)
        if fig is not None:
            figs[sec.id] = fig
        page.add(sec.title, page.figure_html(fig) if fig is not None else note(why or "no data"), anchor=sec.id,
                 intro=sec.intro)


def run_page(data: RunData) -> tuple[Page, dict[str, go.Figure]]:
    """The single-run report page, and its figures by id (for PNG export)."""
    page = Page(f"grokscope report: {data.name}")
    stale_note = note(f"Stale analysis: {data.stale}.") if data.stale else ""
    page.add("Summary", stale_note + summary_card(data), anchor="summary")
    sections = sections_for([*data.expected, *data.analyses], data=data)
    figs: dict[str, go.Figure] = {}
    _add_sections(page, sections, data, figs)
    nav = "<nav>" + "".join(f'<a href="#{s.id}">{esc(s.title)}</a>' for s in sections) + "</nav>"
    page.sections.insert(0, nav)
    return page, figs


def comparison_page(datas: Sequence[RunData]) -> tuple[Page, dict[str, go.Figure]]:
    """Several runs: headline table, overlaid curves and each analysis's comparison figures."""
    page = Page(f"grokscope comparison of {len(datas)} runs")
    df = G.headline_table(datas)
    df.insert(0, "#", range(1, len(df) + 1))
    listing = table([(f"{i + 1}: {d.name}", d.path) for i, d in enumerate(datas)])
    page.add("Runs", listing + frame_table(df), anchor="runs",
             intro="Headline numbers per run (a dash where a run has not been analysed).")
    figs: dict[str, go.Figure] = {}
    names = [n for d in datas for n in (*d.expected, *d.analyses)]
    _add_sections(page, sections_for(names, compare=True), datas, figs)
    return page, figs


def sweep_page(path: Any, sweep: dict) -> tuple[Page, dict[str, go.Figure]]:
    """A sweep folder: its trials, the phase diagram, grokking steps across seeds, metric vs field."""
    from grokscope.report import sweep_figures as S
    from grokscope.sweeps.index import index_runs

    index = index_runs(path)
    swept = list(sweep.get("swept") or [])
    page = Page(f"grokscope sweep: {sweep.get('name', 'sweep')}")
    n_trials = len(sweep.get("trials") or [])
    failures = sorted(p.stem for p in (path / "failures").glob("*.txt")) if (path / "failures").is_dir() else []
    head = table([("sweep", sweep.get("name")), ("folder", path), ("trials", f"{len(index)} trained of {n_trials}"),
                  ("failed", ", ".join(failures) or "none"), ("swept fields", ", ".join(swept) or "none"),
                  ("outcome rule", f"never groks: no test_acc >= 0.99; generalises at once: grokking step <= "
                                   f"{S.AT_ONCE:g} x the memorisation step (train_acc >= 0.99); groks: otherwise")])
    page.add("Sweep", head, anchor="sweep")
    figs: dict[str, go.Figure] = {}
    for sec in (Section("phase_diagram", "Phase diagram", lambda d: S.phase_diagram(d, swept),
                        "Each cell is one setting of the first two swept fields, over all its seeds."),
                Section("grokking_steps", "Grokking steps across seeds", lambda d: S.grokking_distribution(d, swept),
                        "Single runs mislead: the grokking step of one setting spreads over seeds."),
                Section("metric_vs_field", "Final test accuracy against each swept field",
                        lambda d: S.metric_vs_fields(d, swept)),
                Section("key_frequencies", "Key-frequency agreement across seeds",
                        lambda d: S.key_frequency_agreement(d, swept))):
        fig, why = _try_figure(lambda: sec.figure(index), sec.id)
        if fig is not None:
            figs[sec.id] = fig
        page.add(sec.title, page.figure_html(fig) if fig is not None else note(why or "no data"), anchor=sec.id,
                 intro=sec.intro)
    shown = [c for c in ("path", *swept, "last_step", "memorization_step", "grokking_step", "final_test_acc",
                         "key_frequencies") if c in index]
    trials = S.with_outcomes(index)[shown + ["outcome"]] if len(index) else index
    page.add("Trials", frame_table(trials), anchor="trials", intro="One row per trained trial (its run directory under the folder).")
    return page, figs


def crossover_page(path: Any, doc: dict) -> tuple[Page, dict[str, go.Figure]]:
    """A crossover folder (grokscope.sweeps.crossover): the search, the trials' figure and table."""
    from grokscope.report import sweep_figures as S

    search, result = doc.get("search") or {}, doc.get("crossover") or {}
    page = Page(f"grokscope crossover search over {search.get('field')}")
    head = table([("folder", path), ("field", search.get("field")), ("lo / hi", f"{search.get('lo')} / {search.get('hi')}"),
                  ("budget", f"{search.get('max_trials')} trials of "
                             + (f"{search['steps']} steps" if search.get("steps") else
                                f"{(doc.get('base') or {}).get('train', {}).get('epochs')} epochs")
                             + f"; stop at test acc >= {search.get('target')}"),
                  ("result", f"{result.get('status')}: largest size that did not generalise {result.get('below')}, "
                             f"smallest that did {result.get('above')}"),
                  ("compute", f"{result.get('trials')} trials, {result.get('steps')} steps")])
    page.add("Crossover", head, anchor="crossover",
             intro="Below the crossover a run memorises and never generalises within the budget; above it, it "
                   "generalises, and just above it the generalisation comes late: grokking.")
    figs: dict[str, go.Figure] = {}
    fig, why = _try_figure(lambda: S.crossover_trials(doc), "crossover_trials")
    if fig is not None:
        figs["crossover_trials"] = fig
    page.add("Trials by data size", page.figure_html(fig) if fig is not None else note(why or "no data"),
             anchor="crossover_trials",
             intro="Filled: the step where test accuracy reached the target (a cross: the budget, never reached); "
                   "hollow: the step where train accuracy reached it. Shaded: the bracket found.")
    trials = pd.DataFrame(doc.get("trials") or [])
    trials.insert(0, "trial", range(1, len(trials) + 1))
    page.add("Trials", frame_table(trials), anchor="trials", intro="In the order run; each is a run directory in the folder.")
    return page, figs
