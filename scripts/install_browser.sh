#!/usr/bin/env bash
# Install what the browser tests (pytest -m browser, tests/report/test_browser.py) need:
# Debian's chromium (apt) and the playwright Python package (pip, into a virtual environment).
# Playwright drives /usr/bin/chromium directly, so `playwright install` (which downloads its own
# browser builds) is never run. Idempotent: installed pieces are left as they are.
#
#   scripts/install_browser.sh            # venv at ./.venv
#   scripts/install_browser.sh /path/venv
set -euo pipefail

VENV="${1:-.venv}"
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
    echo "install_browser.sh: no Python at $PY (pass the virtual environment as the first argument)" >&2
    exit 2
fi

if [ -x /usr/bin/chromium ] && dpkg -s fonts-liberation >/dev/null 2>&1; then
    echo "chromium: already installed ($(/usr/bin/chromium --version 2>/dev/null | head -n 1))"
else
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    $SUDO apt-get update -qq
    # fonts-liberation: chromium only recommends it; without a font, plot text has nothing to render with
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation
    echo "chromium: installed ($(/usr/bin/chromium --version 2>/dev/null | head -n 1))"
fi

if "$PY" -c "import playwright" 2>/dev/null; then
    echo "playwright: already installed in $VENV"
else
    "$PY" -m pip install --quiet "playwright>=1.40"
    echo "playwright: installed in $VENV"
fi

# Smoke check: start the browser headless once, fetching nothing.
"$PY" - <<'EOF'
from playwright.sync_api import sync_playwright

args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
with sync_playwright() as pw:
    browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=args)
    page = browser.new_page()
    page.set_content("<p id='ok'>ok</p>")
    assert page.inner_text("#ok") == "ok"
    browser.close()
print("browser check: ok")
EOF
