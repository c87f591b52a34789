#!/usr/bin/env bash
# Set up the environment and run the main job on the bundled default model:
# export (ONNX + OpenVINO, parity-gated) → INT8 click decoder (accuracy-gated) → benchmark report.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
OUT="${OUT:-interformer_export}"  # the folder every README example uses
bash scripts/setup.sh
"$VENV/bin/interformer-export" --out "$OUT"
"$VENV/bin/interformer-quantize" "$OUT"
"$VENV/bin/interformer-bench" "$OUT" --out "$OUT/bench"
echo "artifacts in $OUT; benchmark report in $OUT/bench (report.md, report.json, plots)"
