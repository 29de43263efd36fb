"""Screenshot grokscope reports in headless Chromium, offline, for reviews and issue notes.

    .venv/bin/python scripts/screenshot.py RUN/report.html compare.html --out shots/ [--height 2400]

Each page becomes OUT/<stem>.png (the top --height pixels at 1280 px wide, or the whole page with
--height 0). Needs Debian's chromium and playwright (scripts/install_browser.sh).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def screenshot(pages: list[Path], out: Path, height: int, width: int = 1280) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        for html in pages:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
            page.goto(html.resolve().as_uri())
            page.wait_for_function("document.querySelectorAll('.plot .main-svg').length > 0")
            page.wait_for_timeout(1000)
            full = page.evaluate("document.documentElement.scrollHeight")
            clip = {"x": 0, "y": 0, "width": width, "height": min(full, height) if height else full}
            dest = out / f"{html.stem if html.stem != 'report' else html.parent.name}.png"
            page.screenshot(path=str(dest), clip=clip, full_page=True)
            written.append(dest)
            page.close()
        browser.close()
    return written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pages", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--height", type=int, default=2400, help="pixels from the top (0: the whole page)")
    args = ap.parse_args()
    missing = [str(p) for p in args.pages if not p.is_file()]
    if missing:
        print(f"screenshot.py: error: no such page: {missing[0]}", file=sys.stderr)
        return 2
    for p in screenshot(args.pages, args.out, args.height):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
