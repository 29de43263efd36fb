"""Every README and docs/ snippet runs as written, in order, in a fresh folder (tests/docs_snippets.py).

Each Markdown file runs in its own process and folder, with a copy of examples/ as a clone has it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from docs_snippets import blocks

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("md", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_snippets_run_as_written(md, tmp_path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "docs_snippets.py"), str(md), str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:] + proc.stdout[-2000:]


def test_the_runner_fails_on_a_broken_snippet(tmp_path):
    """The harness itself: a failing command, a wrong console output and a bad dry-run line all fail."""
    for body in ("```bash\ngrokscope train --preset nosuch\n```\n",
                 "```console\n$ echo hello\ngoodbye\n```\n",
                 "<!-- docs-test: dry-run -->\n```bash\nrm -rf runs\n```\n",
                 "```python\nraise ValueError('drift')\n```\n"):
        md = tmp_path / "x.md"
        md.write_text(body)
        proc = subprocess.run([sys.executable, str(Path(__file__).parent / "docs_snippets.py"), str(md), str(tmp_path)],
                              capture_output=True, text=True)
        assert proc.returncode != 0, body


def test_only_prose_blocks_go_unrun():
    """No runnable block hides behind a missing language tag: unlabeled blocks are layouts, not commands."""
    for md in DOCS:
        for b in blocks(md.read_text()):
            if b.lang == "":
                assert not b.code.lstrip().startswith(("grokscope", "$", "import", "python", ".venv")), f"{md.name}:{b.line}"
