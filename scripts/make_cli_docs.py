"""Write the options table of each verb's page, docs/commands/<verb>.md, from the CLI's own parser.

Run `python scripts/make_cli_docs.py` after changing a flag; tests/test_docs_site.py fails while a
page's table differs from the parser. Only the part between `<!-- options: VERB -->` and
`<!-- /options -->` is generated; the rest of each page is written by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from grokscope.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "docs" / "commands"
REGION = re.compile(r"(<!-- options: (\w+) -->\n).*?(<!-- /options -->)", re.S)


def verbs() -> dict[str, argparse.ArgumentParser]:
    """The subcommand parsers by name (argparse keeps them on its private _subparsers action)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


def options_table(parser: argparse.ArgumentParser) -> str:
    rows = ["| argument | default | what it does |", "|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            name = ", ".join(action.option_strings)
            if action.choices:
                name += " {" + ",".join(action.choices) + "}"
            elif action.nargs != 0:
                meta = action.metavar or action.dest.upper()
                name += " " + (" ".join(meta) if isinstance(meta, tuple) else meta)
                name += " ..." if action.nargs in ("+", "*") else ""
        else:
            name = action.metavar or action.dest
            name += " ..." if action.nargs in ("+", "*") else ""
        default = "" if action.default in (None, False, argparse.SUPPRESS) else f"`{action.default}`"
        repeat = " (repeatable)" if isinstance(action, argparse._AppendAction) else ""
        rows.append(f"| `{name}` | {default} | {_cell(action.help or '')}{repeat} |")
    return "\n".join(rows) + "\n"


def render(text: str) -> str:
    """The page with every options region regenerated."""
    parsers = verbs()
    return REGION.sub(lambda m: m.group(1) + options_table(parsers[m.group(2)]) + m.group(3), text)


def main() -> int:
    for page in sorted(PAGES.glob("*.md")):
        text = page.read_text()
        new = render(text)
        if new != text:
            page.write_text(new)
            print(f"wrote {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
