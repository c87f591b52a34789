#!/usr/bin/env bash
# Create (or reuse) the virtualenv and install interformer-edge with the workstation, dev and serve extras.
# torch is pinned first: an unpinned torch would pull gigabytes of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
# A venv set up from the same pyproject.toml, constraints.txt and this script is reused without pip
# (its resolve alone takes half a minute); any change to them, or a broken install, installs again.
STAMP="$VENV/.interformer-edge-setup"
wanted="$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$wanted" ] \
    && "$VENV/bin/python" -c "import interformer_edge.export, interformer_edge.annotate" 2>/dev/null; then
  echo "environment ready: $VENV (unchanged since it was set up)"
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
rm -f "$STAMP"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
# serve: interformer-annotate (its tests start the server and drive Debian's chromium with Playwright)
# ray: interformer-encode --engine ray (its tests start a local Ray instance)
# constraints.txt pins the workstation stack to the versions the suite was verified with.
"$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[workstation,dev,serve,ray]"
echo "$wanted" > "$STAMP"
echo "environment ready: $VENV"
