"""A self-contained HTML page: plotly.js inlined once, each figure as inert JSON plus one loader.

Safety. Every user-supplied string (run names, config values, paths) reaches the page through
`esc` (html.escape) or inside figure JSON. JSON sits in <script type="application/json"> blocks and
`safe_json` writes every '<', '>' and '&' as a \\u escape, so no '</script>' or '<!--' can end or
confuse the block; the loader reads it with JSON.parse, never eval. The page fetches nothing.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:1.5em;margin:.6em 0 .2em}h2{font-size:1.2em;margin:0 0 .4em}
section{background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:14px 18px;margin:14px 0}
.muted{color:#666}.note{color:#8a6d3b;background:#fcf8e3;border:1px solid #faebcc;padding:8px 12px;border-radius:6px}
table{border-collapse:collapse;font-size:.9em}
td,th{border-bottom:1px solid #eee;padding:3px 10px 3px 0;text-align:left;vertical-align:top}
th{font-weight:600}.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:18px}.cards>div{flex:1 1 320px}
.scroll{overflow-x:auto}.scroll td{white-space:nowrap}
details summary{cursor:pointer}code{font-size:.92em}nav a{margin-right:12px}
"""

LOADER = """
(function () {
  var blocks = document.querySelectorAll('script[type="application/json"][data-figure]');
  blocks.forEach(function (block) {
    var div = document.getElementById(block.getAttribute('data-figure'));
    try {
      var fig = JSON.parse(block.textContent);
      Plotly.newPlot(div, {data: fig.data, layout: fig.layout, frames: fig.frames || [],
                           config: {responsive: true, displaylogo: false}});
    } catch (err) {
      div.textContent = 'This figure could not be drawn: ' + err;
      div.className = 'note';
    }
  });
})();
"""


def esc(value: Any) -> str:
    """Text for HTML (element content or a quoted attribute)."""
    return html.escape(str(value), quote=True)


def safe_json(obj: Any) -> str:
    """JSON that cannot break out of a <script> block (escapes <, >, & and the JS line separators)."""
    text = obj if isinstance(obj, str) else json.dumps(obj, allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def figure_json(fig: go.Figure) -> str:
    """Plotly's JSON for a figure (numpy arrays become base64 typed arrays), made script-safe."""
    return safe_json(pio.to_json(fig, validate=False, engine="json"))


@dataclass
class Page:
    """A report page being built: sections of HTML in order, figures numbered as they are added."""

    title: str
    sections: list[str] = field(default_factory=list)
    n_figures: int = 0

    def figure_html(self, fig: go.Figure, height: int | None = None) -> str:
        self.n_figures += 1
        fid = f"fig{self.n_figures}"
        h = height or int(fig.layout.height or 450)
        return (f'<div id="{fid}" class="plot" style="min-height:{h}px"></div>\n'
                f'<script type="application/json" data-figure="{fid}">{figure_json(fig)}</script>')

    def add(self, title: str, body: str, anchor: str | None = None, intro: str = "") -> None:
        aid = f' id="{esc(anchor)}"' if anchor else ""
        intro_html = f'<p class="muted">{esc(intro)}</p>' if intro else ""
        self.sections.append(f"<section{aid}><h2>{esc(title)}</h2>{intro_html}{body}</section>")

    def render(self, subtitle: str = "") -> str:
        from plotly.offline import get_plotlyjs

        return "\n".join([
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            # No network: the CSP forbids every fetch; scripts and styles are inline only.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
            "font-src data:\">",
            f"<title>{esc(self.title)}</title>",
            f"<style>{CSS}</style>",
            f"<script>{get_plotlyjs()}</script>",
            "</head><body><main>",
            f"<h1>{esc(self.title)}</h1>",
            f'<p class="muted">{subtitle}</p>' if subtitle else "",
            *self.sections,
            f"<script>{LOADER}</script>",
            "</main></body></html>",
        ])


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def table(rows: list[tuple[str, Any]]) -> str:
    """A two-column key / value table; both columns escaped."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def frame_table(df, formats: dict[str, str] | None = None) -> str:
    """An escaped HTML table from a DataFrame; numbers formatted, missing values as a dash."""
    formats = formats or {}
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    rows = []
    for _, r in df.iterrows():
        cells = []
        for c in df.columns:
            v = r[c]
            if v is None or (isinstance(v, float) and v != v):
                cells.append('<td class="num">–</td>')
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                cells.append(f'<td class="num">{esc(format(v, formats.get(c, ".4g")))}</td>')
            else:
                cells.append(f"<td>{esc(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
