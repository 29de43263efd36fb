"""The documentation site (mkdocs.yml over docs/) builds with no warning, lists every page, and
each verb's page holds the options its parser has. The snippets themselves run in test_docs.py."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CLI_DOCS = runpy.run_path(str(ROOT / "scripts" / "make_cli_docs.py"))


def _nav_pages(nav) -> list[str]:
    out = []
    for item in nav:
        for value in item.values() if isinstance(item, dict) else [item]:
            out += _nav_pages(value) if isinstance(value, list) else [value]
    return out


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    nav = _nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages


def test_every_verb_has_a_page_whose_options_are_the_parsers():
    verbs = CLI_DOCS["verbs"]()
    assert sorted(p.stem for p in (DOCS / "commands").glob("*.md")) == sorted(verbs)
    for verb in verbs:
        text = (DOCS / "commands" / f"{verb}.md").read_text()
        assert f"<!-- options: {verb} -->" in text, verb
        assert CLI_DOCS["render"](text) == text, f"docs/commands/{verb}.md is stale: python scripts/make_cli_docs.py"


def test_an_options_table_lists_each_flag_with_its_default():
    table = CLI_DOCS["options_table"](CLI_DOCS["verbs"]()["sweep"])
    assert "| `--backend {local,ray}` | `local` |" in table
    assert "| `SPEC` |" in table and "--help" not in table


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "reproduction" / "index.html").is_file()
