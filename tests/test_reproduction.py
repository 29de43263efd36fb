"""The reproduction table (docs/reproduction.md): every experiment's commands run (at 8 epochs), every
claim's readout works on what they wrote, and the table in the docs is the one the recorded numbers
give (benchmarks/results/reproduction.json), so no number in it is typed by hand."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPRO = runpy.run_path(str(ROOT / "benchmarks" / "reproduce.py"), run_name="reproduce")


def test_every_command_runs_small_and_every_claim_reads_a_number(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reproduce.py"), "--small", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    for claim in REPRO["CLAIMS"]:
        assert printed.get(claim.id), claim.id


def test_claims_and_experiments_match():
    experiments, claims = REPRO["EXPERIMENTS"], REPRO["CLAIMS"]
    assert {c.experiment for c in claims} == set(experiments)  # no experiment without a claim, no claim without its runs
    assert len({c.id for c in claims}) == len(claims)


def test_the_docs_table_is_the_recorded_numbers():
    results = json.loads((ROOT / "benchmarks" / "results" / "reproduction.json").read_text())
    text = (ROOT / "docs" / "reproduction.md").read_text()
    assert REPRO["render"](text, results) == text, "run python benchmarks/reproduce.py --write-docs"
    assert set(results["claims"]) == {c.id for c in REPRO["CLAIMS"]}  # every claim measured at full size
    for name in REPRO["FIGURES"].values():  # the canonical figures the table links
        assert (ROOT / "docs" / "img" / "reproduction" / f"{name}.png").is_file(), name
    for exp in REPRO["EXPERIMENTS"].values():  # each experiment's commands are on the page, with an anchor
        assert f'id="{exp.id}"' in text or f"{{#{exp.id}}}" in text, exp.id
        for line in exp.commands:
            assert line.replace("RUNS", "runs/reproduction") in text, line
