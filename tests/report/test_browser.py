"""Reports in a real browser (Debian's chromium driven by Playwright), with the network cut off.

Skipped, with the reason, when chromium or the playwright package is absent; CI installs both with
scripts/install_browser.sh.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from grokscope.report import write_report

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (run scripts/install_browser.sh)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright not installed (scripts/install_browser.sh)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def _renderer_notice(text: str) -> bool:
    """Chromium's performance hints about its own software WebGL (the 3D loss surface draws with
    WebGL), not complaints about the page."""
    return (text.startswith("[.WebGL-") and "GL Driver Message" in text and "Performance" in text) or \
        text.startswith("Canvas2D: Multiple readback operations using getImageData")


class Visit:
    """One report opened offline, with everything the page tried or complained about."""

    def __init__(self, browser, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type in ("error", "warning")
                     and not _renderer_notice(m.text) else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.route("**/*", self._route)
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_function("document.querySelectorAll('.plot .main-svg').length > 0")
        self.page.wait_for_timeout(300)

    def _route(self, route) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:  # offline: anything else is recorded and refused
            self.requests.append(route.request.url)
            route.abort()

    def plots(self) -> list[dict]:
        return self.page.evaluate("""Array.from(document.querySelectorAll('.plot')).map(d => ({
            id: d.id, svg: d.querySelectorAll('svg.main-svg').length,
            marks: d.querySelectorAll('.trace, .hm, image, path.point, .bars, .gl-container canvas').length,
            frames: (d._transitionData && d._transitionData._frames || []).length}))""")


def _check_clean(v: Visit) -> None:
    assert v.errors == [], v.errors
    assert v.requests == [], v.requests
    assert v.dialogs == [], v.dialogs


def test_real_run_report_renders_offline(browser, analysed_tiny_run):
    v = Visit(browser, write_report(analysed_tiny_run))
    _check_clean(v)
    plots = v.plots()
    assert len(plots) >= 7  # the tiny run has no key frequencies: no circles
    for p in plots:
        assert p["svg"] > 0 and p["marks"] > 0, p
    assert max(p["frames"] for p in plots) > 1  # the W_E Fourier animation
    # the run name, which holds a <script> tag, is shown as text
    assert "<script>alert('x')</script>" in v.page.inner_text("h1")
    assert "<script>alert('x')</script>" in v.page.inner_text("#summary")
    assert v.page.evaluate("document.querySelectorAll('script').length") == 2 + len(plots)
    v.page.close()


def test_animation_plays(browser, planted_run, tmp_path):
    v = Visit(browser, write_report(planted_run, out=tmp_path / "r.html"))
    _check_clean(v)
    plots = {p["id"]: p for p in v.plots()}
    assert len(plots) == 9 and all(p["svg"] > 0 and p["marks"] > 0 for p in plots.values())
    circles = v.page.locator("#circles .plot").get_attribute("id")
    assert plots[circles]["frames"] > 5
    first = v.page.evaluate(f"document.getElementById('{circles}')._fullData[1].x[0]")
    # jump to the first frame as the slider does, then press Play
    v.page.evaluate(f"""(() => {{ const gd = document.getElementById('{circles}');
        return Plotly.animate(gd, [gd._transitionData._frames[0].name],
                              {{frame: {{duration: 0}}, transition: {{duration: 0}}}}); }})()""")
    early = v.page.evaluate(f"document.getElementById('{circles}')._fullData[1].x[0]")
    assert early != first
    v.page.locator(f"#{circles} .updatemenu-button").first.click()
    v.page.wait_for_timeout(600)
    assert v.page.evaluate(f"document.getElementById('{circles}')._fullData[1].x[0]") != early
    _check_clean(v)
    v.page.close()


def test_comparison_report_renders(browser, planted_run, unanalysed_run, tmp_path):
    v = Visit(browser, write_report([planted_run, unanalysed_run], out=tmp_path / "cmp.html"))
    _check_clean(v)
    plots = v.plots()
    assert len(plots) == 2 and all(p["svg"] > 0 for p in plots)
    assert "<script>alert('x')</script>" in v.page.inner_text("#runs")
    legend = v.page.evaluate("document.querySelector('#compare_curves .legend').textContent")
    assert "<script>alert('x')</script>" in legend  # plotly's text too
    v.page.close()


def test_chromium_path_is_what_ci_installs():
    """Guards the skip above: CI must install chromium where the tests look for it."""
    if shutil.which("chromium") is None:
        pytest.skip("chromium not installed (run scripts/install_browser.sh)")
    assert Path(shutil.which("chromium")).resolve() == CHROMIUM.resolve()
