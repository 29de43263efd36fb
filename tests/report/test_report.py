"""write_report: one self-contained file, escaped, degrading section by section; comparison reports."""

from __future__ import annotations

import json
import re
import shutil
import time

from grokscope.report import write_report
from grokscope.report.html import esc, safe_json

ATTACK = "<script>alert('x')</script>"


def _scripts(html: str) -> list[str]:
    return re.findall(r"<script[^>]*>(.*?)</script>", html, flags=re.S)


def test_single_run_report_is_self_contained(planted_run):
    from plotly.offline import get_plotlyjs

    path = write_report([planted_run])
    assert path == planted_run / "report.html"
    html = path.read_text()
    plotlyjs = get_plotlyjs()
    assert html.count(plotlyjs[:200]) == 1  # plotly.js embedded once
    assert len(html) < 4 * len(plotlyjs)
    # nothing loads from elsewhere: no src / href attributes pointing off the page
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)\s*=""", html)
    assert "cdn.plot.ly" not in html.replace(plotlyjs, "")
    assert html.count('data-figure="') == 9


def test_user_strings_are_escaped(planted_run):
    html = write_report(planted_run).read_text()
    assert ATTACK not in html
    assert esc("planted " + ATTACK) in html  # the summary card shows it as text
    # every JSON block is inert: no '<' inside, and it parses
    for block in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', html, flags=re.S):
        assert "<" not in block
        json.loads(block)
    # only the plotly.js block, the loader and the JSON blocks are scripts
    assert len(_scripts(html)) == 2 + 9


def test_safe_json_cannot_close_a_script():
    text = safe_json({"name": "</script><!-- & \u2028"})
    assert "</" not in text and "<!--" not in text and "&" not in text
    assert json.loads(text) == {"name": "</script><!-- & \u2028"}


def test_unanalysed_run_degrades_to_notes(unanalysed_run, caplog):
    html = write_report(unanalysed_run).read_text()
    assert html.count('data-figure="') == 1  # the curves need only metrics.parquet
    assert html.count('class="note"') >= 8
    assert "grokscope analyze" in html
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # missing data is not an error


def test_corrupt_and_partial_analysis(planted_run, tmp_path):
    run = tmp_path / "partial"
    shutil.copytree(planted_run, run)
    (run / "analysis" / "fourier" / "final.safetensors").write_bytes(b"not a safetensors file")
    (run / "analysis" / "fourier" / "circles.parquet").unlink()
    html = write_report(run).read_text()
    assert "final.safetensors could not be read" in html
    assert "circles.parquet not found" in html
    assert html.count('data-figure="') == 4  # curves, progress, embedding norms (final and animated)


def test_run_without_key_frequencies(tmp_path):
    from planted_runs import plant_run

    html = write_report(plant_run(tmp_path / "rand", keys=())).read_text()
    assert "none (no Fourier structure)" in html
    assert "no key frequencies" in html


def test_comparison_report(planted_run, unanalysed_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_report([planted_run, unanalysed_run])
    assert path.name == "comparison.html" and path.resolve().parent == tmp_path.resolve()
    html = path.read_text()
    assert ATTACK not in html and esc("planted " + ATTACK) in html
    assert html.count('data-figure="') == 2
    assert "<table><thead>" in html and "grokking_step" in html
    out = write_report([planted_run, planted_run], out=tmp_path / "sub" / "cmp.html")
    assert out.is_file()


def test_cli_report(planted_run, tmp_path, capsys):
    from grokscope.cli import main

    out = tmp_path / "r.html"
    assert main(["report", str(planted_run), "--out", str(out)]) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nope")]) == 2


def test_canonical_sized_report_is_small_and_quick(tmp_path):
    """p = 113, d_mlp 512, 4 heads, 408 checkpoints, 4001 logged steps: the canonical run's shape."""
    from planted_runs import plant_run

    run = plant_run(tmp_path / "canon", p=113, keys=(14, 35, 41, 42, 52), epochs=40000, checkpoint_every=100,
                    d_mlp=512, n_heads=4)
    t0 = time.perf_counter()
    path = write_report(run)
    seconds = time.perf_counter() - t0
    size_mb = path.stat().st_size / 1e6
    assert size_mb < 15, size_mb
    assert seconds < 30, seconds


def test_a_stale_analysis_is_flagged_in_the_page_and_on_stderr(tmp_path, capsys):
    import grokscope
    from grokscope.cli import main

    cfg = grokscope.get_preset("tiny").replace(**{"train.epochs": 40, "train.progress": False})
    run = grokscope.train(cfg, tmp_path / "run")
    grokscope.analyze(run)
    assert "Stale analysis" not in write_report(run).read_text()
    # the run trains on (a longer config, resumed): the analysis now describes an earlier state
    import json

    doc = json.loads((run / "config.json").read_text())
    doc["config"]["train"]["epochs"] = 80
    (run / "config.json").write_text(json.dumps(doc))
    grokscope.train(grokscope.load_run(run).config, run, resume=True)
    assert main(["report", str(run)]) == 0
    err = capsys.readouterr().err
    assert "analysis saw checkpoints up to step 40, but the run has trained on to step 80" in err
    assert "Stale analysis" in (run / "report.html").read_text()
    assert main(["report", str(run), "--reanalyze"]) == 0
    assert "warning" not in capsys.readouterr().err and "Stale analysis" not in (run / "report.html").read_text()


def test_a_config_that_disagrees_with_its_checkpoints_names_the_field(tmp_path, capsys):
    import json

    import grokscope
    from grokscope.cli import main

    run = grokscope.train(grokscope.get_preset("tiny").replace(**{"train.epochs": 10, "train.progress": False}),
                          tmp_path / "run")
    for key, value, field in (("d_mlp", 32, "model.d_mlp"), ("d_model", 16, "model.d_model")):
        doc = json.loads((run / "config.json").read_text())
        good = doc["config"]["model"][key]
        doc["config"]["model"][key] = value
        (run / "config.json").write_text(json.dumps(doc))
        for argv in (["analyze", str(run)], ["report", str(run)]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"{field} disagrees with the checkpoints" in err, err
        doc["config"]["model"][key] = good
        (run / "config.json").write_text(json.dumps(doc))
    doc = json.loads((run / "config.json").read_text())
    doc["config"]["task"]["p"] = 29
    (run / "config.json").write_text(json.dumps(doc))
    assert main(["analyze", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err and "IndexError" not in err, err
