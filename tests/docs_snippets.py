"""Run the code blocks of a Markdown file in order, as a reader would: `python tests/docs_snippets.py FILE DIR`.

Blocks run in DIR (which should hold a copy of examples/, as a clone does):
- ```python: exec'd in one namespace per file (later blocks see earlier names, as in a notebook);
- ```bash: each line a shell command (PATH starts with this Python's bin/, so `grokscope` is the
  installed one); it must exit 0;
- ```console: `$ command` lines, each followed by the exact output (stdout and stderr) it prints;
- ```yaml: must parse.
A comment on the line before a fence changes that: `<!-- docs-test: dry-run -->` runs each line of
a bash block (all `grokscope train|demo|sweep`, the minutes-long ones) with `--dry-run`, which
checks the config, memory and output folder and writes nothing; `<!-- docs-test: skip: WHY -->`
skips a block and says why. Other blocks (no language: layouts, diagrams) are prose.
`fig.show()` serialises the figure (and shows nothing): a docs run has no screen or notebook.
"""

from __future__ import annotations

import linecache
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!--\s*docs-test:\s*(dry-run|skip:.*?)\s*-->\s*$")
DRY_RUN_VERBS = ("train", "demo", "sweep")


@dataclass
class Block:
    lang: str
    code: str
    line: int  # of the opening fence, 1-based
    marker: str | None


def blocks(text: str) -> list[Block]:
    out = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.search(before)
        out.append(Block(m.group(1), m.group(2), text[: m.start()].count("\n") + 1, marker.group(1) if marker else None))
    return out


class SnippetError(Exception):
    pass


def _shell(cmd: str, where: str, env: dict) -> str:
    proc = subprocess.run(cmd, shell=True, executable="/bin/bash", env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SnippetError(f"{where}: `{cmd}` exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout + proc.stderr


def _dry_run(line: str, where: str) -> str:
    words = shlex.split(line, comments=True)
    if words[:1] != ["grokscope"] or len(words) < 2 or words[1] not in DRY_RUN_VERBS:
        raise SnippetError(f"{where}: a dry-run block holds only grokscope {'/'.join(DRY_RUN_VERBS)} lines, not `{line}`")
    return shlex.join([*words, "--dry-run"])


def _console(code: str, where: str, env: dict) -> None:
    parts = re.split(r"^\$ (.*)\n", code, flags=re.M)  # ['', cmd, output, cmd, output, ...]
    for cmd, expected in zip(parts[1::2], parts[2::2]):
        proc = subprocess.run(cmd, shell=True, executable="/bin/bash", env=env, capture_output=True, text=True)
        got = proc.stdout + proc.stderr
        if got.strip() != expected.strip():
            raise SnippetError(f"{where}: `{cmd}` printed\n{got}\nbut the docs show\n{expected}")


def _no_screen() -> None:
    import plotly.io as pio
    from plotly.io.base_renderers import ExternalRenderer

    class Serialise(ExternalRenderer):
        def render(self, fig_dict: dict) -> None:
            pio.to_json(fig_dict)

    pio.renderers["docs-test"] = Serialise()
    pio.renderers.default = "docs-test"


def run_file(md: Path) -> list[str]:
    """Run every block of `md` in the current directory; returns a line per block (what was done)."""
    import yaml

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    _no_screen()
    namespace: dict = {"__name__": "__docs__"}
    done = []
    for b in blocks(md.read_text()):
        where = f"{md.name}:{b.line}"
        if b.marker and b.marker.startswith("skip:"):
            done.append(f"{where} skipped ({b.marker[5:].strip()})")
            continue
        if b.lang == "python":
            # the source is registered as a notebook registers a cell's, so tracebacks show it and
            # tools that read their caller's source (nnsight's trace blocks) find it
            linecache.cache[where] = (len(b.code), None, b.code.splitlines(True), where)
            exec(compile(b.code, where, "exec"), namespace)
        elif b.lang == "bash":
            for line in b.code.splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    _shell(_dry_run(line, where) if b.marker == "dry-run" else line, where, env)
        elif b.lang == "console":
            _console(b.code, where, env)
        elif b.lang == "yaml":
            yaml.safe_load(b.code)
        else:
            done.append(f"{where} prose ({b.lang or 'no language'})")
            continue
        done.append(f"{where} ran ({b.lang}{', dry run' if b.marker == 'dry-run' else ''})")
    return done


def main() -> int:
    md, where = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    os.chdir(where)
    try:
        for line in run_file(md):
            print(line)
    except SnippetError as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
