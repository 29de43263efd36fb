#!/usr/bin/env bash
# A wheel built from this checkout installs into a fresh venv and runs there (issue 16; CI runs it).
# Usage: scripts/wheel_check.sh [python]   (the venv's python; default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$PY -m pip wheel -q --no-deps -w "$work/dist" .
$PY -m venv "$work/venv"
bin="$work/venv/bin"
"$bin/python" -m pip install -q torch==2.13.0   # the pinned CPU wheel first, as the Makefile does
"$bin/python" -m pip install -q "$work"/dist/grokscope-*.whl
cd "$work"  # away from the checkout, so the installed package is what runs
"$bin/grokscope" --version
"$bin/grokscope" demo --help > /dev/null
"$bin/grokscope" train --preset tiny --set train.epochs=5 --set train.progress=false --out run > /dev/null
"$bin/python" -c "import grokscope, pathlib; assert 'site-packages' in grokscope.__file__; print('wheel ok:', pathlib.Path(grokscope.__file__).parent)"
