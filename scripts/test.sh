#!/usr/bin/env bash
# Set up the environment if needed, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
bash scripts/setup.sh
# Style first (seconds): lint rules and the formatter's layout, as pyproject.toml sets them.
"$VENV/bin/ruff" check --quiet .
"$VENV/bin/ruff" format --check --quiet .
# Two workers (pytest-xdist), one test file each at a time: the CI machine has two cores.
"$VENV/bin/python" -m pytest -q -n "${TEST_WORKERS:-2}" --dist loadfile "$@"
