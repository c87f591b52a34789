#!/usr/bin/env bash
# Set up the environment if needed, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
bash scripts/setup.sh
# Label Studio and X-AnyLabeling, each in its own virtualenv outside the work tree (made once, ~2 min, then
# reused): their end-to-end tests drive the real programs. If one cannot be made, those tests say why.
"$VENV/bin/python" scripts/tool_envs.py || echo "tool environments not made: tests/test_*_real.py will say why"
# Style first (seconds): lint rules and the formatter's layout, as pyproject.toml sets them.
"$VENV/bin/ruff" check --quiet .
"$VENV/bin/ruff" format --check --quiet .
# Two workers (pytest-xdist), one test file each at a time: the CI machine has two cores.
"$VENV/bin/python" -m pytest -q -n "${TEST_WORKERS:-2}" --dist loadfile "$@"
