#!/usr/bin/env bash
# Create (or reuse) the virtualenv and install interformer-edge with the workstation, dev and serve extras.
# torch is pinned first: an unpinned torch would pull gigabytes of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
# serve: interformer-annotate (its tests start the server and drive Debian's chromium with Playwright)
# ray: interformer-encode --engine ray (its tests start a local Ray instance)
# constraints.txt pins the workstation stack to the versions the suite was verified with.
"$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[workstation,dev,serve,ray]"
echo "environment ready: $VENV"
