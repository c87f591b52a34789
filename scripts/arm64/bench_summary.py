"""Print ``BENCH_SUMMARY`` lines from an ``interformer-bench`` report.json (harness.py puts them in its summary).

Usage (inside the arm64 root, with the lean venv's python)::

    python bench_summary.py /tmp/interformer-bench/report.json

Prints the emulation label, the headline (decoder/encoder p50 of every row at one size and thread
count), peak RSS per configuration, and the accuracy rows (parity with the FP32 reference, mIoU@1,
NoC@90). Standard library only. Exits 1 if the report is missing or lacks latency rows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    path = Path(sys.argv[1])
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        print(f"bench_summary: cannot read {path}: {err}", file=sys.stderr)
        return 1
    machine = report.get("machine", {})
    print(
        f"BENCH_SUMMARY {machine.get('emulated') or 'NOT labelled as emulated'}: {machine.get('cpu_model')} "
        f"({machine.get('architecture')}; isa {', '.join(machine.get('isa', {}).get('of_interest', [])) or '-'})"
    )
    headline = report.get("headline") or {}
    print(f"BENCH_SUMMARY {headline.get('text', 'no latency rows')}")
    memory = ", ".join(
        f"{r['backend']} {r['precision']} {r['peak_rss_bytes'] / 2**20:.0f} MiB"
        for r in report.get("memory", [])
        if "peak_rss_bytes" in r
    )
    if memory:
        print(f"BENCH_SUMMARY peak RSS: {memory}")
    accuracy = report.get("accuracy") or {}
    rows = []
    for row in accuracy.get("rows", []):
        parity, quality = row.get("parity", {}), row.get("quality", {})
        text = f"{row['backend']} {row['precision']} mask IoU vs ref {parity.get('mask_iou_mean', float('nan')):.4f}"
        if quality:
            text += f" mIoU@1 {quality['miou@1']:.3f} NoC@90 {quality['noc@90']:.2f}"
        rows.append(text)
    if rows:
        print(
            f"BENCH_SUMMARY accuracy ({accuracy.get('objects')} object(s), {accuracy.get('clicks')} clicks): "
            + "; ".join(rows)
        )
    return 0 if report.get("latency") else 1


if __name__ == "__main__":
    sys.exit(main())
