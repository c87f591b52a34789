"""The benchmark report's tables as plain rows of strings (header, rows), shared by the terminal and
``report.md``: latency, memory and accuracy, with their number formats."""

from __future__ import annotations

from typing import Any

MIB = 2**20


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def mib_text(value: int | None) -> str:
    return "–" if value is None else f"{value / MIB:.1f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _sci(value: float | None) -> str:
    return "–" if value is None else f"{value:.2e}"


def precision_label(row: dict[str, Any]) -> str:
    """``fp32``, ``int8``, ... and for OpenVINO's device default what it resolved to: ``default (bf16)``."""
    shapes = " static" if row.get("static") else ""
    if row["precision"] == "default":
        return f"default ({row.get('computes_in', '?')}){shapes}"
    return row["precision"] + shapes


def _triple(stats: dict[str, Any]) -> str:
    return f"{_ms(stats['p50_ms'])}/{_ms(stats['p90_ms'])}/{_ms(stats['p99_ms'])}"


def latency_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = [
        "backend",
        "precision",
        "threads",
        "size",
        "image p50/p90/p99 (encoder + context)",
        "decoder p50/p90/p99",
        "runs",
        "speed-up enc",
        "speed-up dec",
        "decoder floor ms",
        "floor / p50",
    ]
    body = []
    for r in rows:
        speed = r.get("speedup_vs_pytorch") or {}
        shared = f" (= {r['encoder_shared_with']})" if r.get("encoder_shared_with") else ""
        floor = r.get("floor") or {}
        body.append(
            [
                r["backend"],
                precision_label(r),
                str(r["threads"]),
                r["size"],
                _triple(r["encoder"]) + shared,
                _triple(r["decoder"]),
                f"{r['encoder']['runs']}/{r['decoder']['runs']}",
                _times(speed.get("encoder")),
                _times(speed.get("decoder")),
                _ms(floor.get("floor_ms")),
                "–" if floor.get("efficiency") is None else f"{100 * floor['efficiency']:.0f} %",
            ]
        )
    return header, body


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


def memory_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = [
        "backend",
        "precision",
        "threads",
        "size",
        "peak RSS MiB",
        "imports MiB",
        "loaded MiB",
        "click ms",
        "on disk MiB",
    ]
    body = []
    for r in rows:
        if "error" in r:
            body.append(
                [
                    r["backend"],
                    precision_label(r),
                    str(r["threads"]),
                    r["size"],
                    f"failed: {r['error']}",
                    "",
                    "",
                    "",
                    mib_text(r.get("disk_bytes")),
                ]
            )
            continue
        body.append(
            [
                r["backend"],
                precision_label(r),
                str(r["threads"]),
                r["size"],
                mib_text(r["peak_rss_bytes"]),
                mib_text(r["rss_baseline_bytes"]),
                mib_text(r["rss_after_load_bytes"]),
                _ms(r["click_ms_mean"]),
                mib_text(r.get("disk_bytes")),
            ]
        )
    return header, body


def int8_target_text(variant_name: str, quantized: list[dict[str, Any]], host_class: str) -> str:
    """``portable, covers x86-avx2`` for a row running a quantized decoder variant (``–`` for the others):
    whether the target it was quantized for covers this host's CPU class, so the parity beside it is the proof."""
    variant = next((q for q in quantized if q.get("graph") == "decoder" and q.get("precision") == variant_name), None)
    if variant is None:
        return "–"
    covered = host_class in variant.get("covers", [])
    return f"{variant.get('target', '?')}, {'covers' if covered else 'does NOT cover'} {host_class}"


def accuracy_table(
    acc: dict[str, Any], quantized: list[dict[str, Any]] | None = None, host_class: str = "unknown"
) -> tuple[list[str], list[list[str]]]:
    ks = sorted(
        {k for r in acc.get("rows", []) for k in r.get("quality", {}) if k.startswith("miou@")},
        key=lambda k: int(k.split("@")[1]),
    )
    last = ks[-1] if ks else None
    header = [
        "backend",
        "precision",
        "INT8 target vs host",
        "mask IoU vs ref mean / min",
        "same mask",
        "max |Δlogit|",
        *[k.replace("miou", "mIoU") for k in ks],
        "NoC@85",
        "NoC@90",
        f"Δ{last.replace('miou', 'mIoU')}" if last else "Δ",
    ]
    body = []
    for r in acc.get("rows", []):
        p, q, d = r.get("parity", {}), r.get("quality", {}), r.get("delta_vs_reference", {})
        name = precision_label(r) + (" (ref)" if r.get("reference") else "")
        target = int8_target_text(r.get("variant", r["precision"]), quantized or [], host_class)
        body.append(
            [
                r["backend"],
                name,
                target,
                f"{_num(p.get('mask_iou_mean'), 4)} / {_num(p.get('mask_iou_min'), 4)}",
                "–" if "identical_masks" not in p else f"{100 * p['identical_masks']:.0f} %",
                _sci(p.get("logit_max_abs_diff")),
                *[_num(q.get(k)) for k in ks],
                _num(q.get("noc@85"), 2),
                _num(q.get("noc@90"), 2),
                "–" if last is None or last not in d else f"{d[last]:+.4f}",
            ]
        )
    return header, body


def report_accuracy_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """:func:`accuracy_table` of a whole report, with its INT8 targets and the host's INT8 class."""
    return accuracy_table(
        report["accuracy"],
        report.get("artifact", {}).get("quantized", []),
        report.get("machine", {}).get("isa", {}).get("int8_class", "unknown"),
    )
