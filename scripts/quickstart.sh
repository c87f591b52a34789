#!/usr/bin/env bash
# Set up the environment and run the main job on the bundled default model:
# export (ONNX + OpenVINO, parity-gated) → INT8 click decoder (accuracy-gated) → benchmark report.
#
# The quick start checks less than the full commands, to finish in minutes on two cores: the INT8 gate
# runs on the first QUICK_GATE_OBJECTS held-out objects (20 clicks each) instead of all 100, the
# quantizer skips its own quick latency check (the benchmark right after measures latency), and the
# benchmark times all cores only (not also 1 thread), each latency over at least 10 runs and 0.5 s
# (not 2 s), probes peak memory over 5 clicks instead of 20, and measures accuracy on QUICK_BENCH_OBJECTS
# objects. FULL=1 runs the full gate (100 objects) and the full benchmark (1 and all threads, 20 objects).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
OUT="${OUT:-interformer_export}"  # the folder every README example uses
QUICK_GATE_OBJECTS="${QUICK_GATE_OBJECTS:-20}"
QUICK_BENCH_OBJECTS="${QUICK_BENCH_OBJECTS:-3}"
bash scripts/setup.sh
quantize_args=() bench_args=()
if [ "${FULL:-0}" != 1 ]; then
  quantize_args=(--gate-limit "$QUICK_GATE_OBJECTS" --latency-runs 0)
  bench_args=(--threads "$(nproc)" --limit "$QUICK_BENCH_OBJECTS" --budget 0.5 --memory-clicks 5)
fi
"$VENV/bin/interformer-export" --out "$OUT"
# ${a[@]+"${a[@]}"}: an empty array under `set -u` (bash < 4.4 calls "${a[@]}" unbound).
"$VENV/bin/interformer-quantize" "$OUT" ${quantize_args[@]+"${quantize_args[@]}"}
"$VENV/bin/interformer-bench" "$OUT" --out "$OUT/bench" ${bench_args[@]+"${bench_args[@]}"}
echo "artifacts in $OUT; benchmark report in $OUT/bench (report.md, report.json, plots)"
if [ "${FULL:-0}" != 1 ]; then
  echo "quick start: INT8 gate on $QUICK_GATE_OBJECTS of 100 held-out objects, accuracy on $QUICK_BENCH_OBJECTS; FULL=1 for all"
fi
