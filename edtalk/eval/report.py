"""Evaluation outputs: per-clip CSV, JSON summary, a markdown table in the paper's layout, PNG plots.

Every file is written to a temporary name and renamed, so an interrupted run leaves no half file.
A value sits plain beside the paper's rows only when every input step of its metric matches the
reference (:mod:`edtalk.eval.metrics.reference`); otherwise it carries a † and a footnote naming
the steps that differ.  Skipped metrics show "—" with their reason; clips without a value are
counted.  summary.json names the protocol, each metric's steps and reference, the weight files'
sha256, and every evaluated clip (name and sha256 of both videos).
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..data.layout import EMOTIONS
from .metrics import METRICS

# The paper's numbers (docs/design.md §9; MEAD unless noted, [S]): the reference rows of the table.
PAPER_ROWS = {
    "mead": {
        "EDTalk-A (paper, MEAD)": {"psnr": 21.628, "ssim": 0.722, "m_lmd": 1.537, "fid": 17.698, "acc_emo": 67.32},
        "EDTalk-V (paper, MEAD)": {"psnr": 22.771, "ssim": 0.769, "m_lmd": 1.102, "fid": 15.548, "acc_emo": 68.85},
    },
    "hdtf": {
        "EDTalk-A (paper, HDTF)": {"psnr": 25.156},
        "EDTalk-V (paper, HDTF)": {"psnr": 26.504},
    },
}
# Column order: the paper's MEAD table first, then the metrics it does not report.
COLUMNS = ("psnr", "ssim", "m_lmd", "fid", "acc_emo", "lpips", "f_lmd", "lse_c", "lse_d", "csim")
CSV_EXTRA = ("name", "frames", "emotion", "emo_pred", "av_offset", "skipped")


def _atomic_write(path: Path, data) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data)
    os.replace(tmp, path)
    return path


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _cell(key: str, value: float) -> str:
    return "inf" if value == float("inf") else METRICS[key].fmt.format(value)


def _json_safe(obj):
    """inf/nan → 'inf'/'nan' strings (strict JSON has no such numbers)."""
    if isinstance(obj, float) and obj != obj:
        return "nan"
    if isinstance(obj, float) and obj in (float("inf"), float("-inf")):
        return "inf" if obj > 0 else "-inf"
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_csv(rows: List[dict], path) -> Path:
    keys = list(CSV_EXTRA[:3]) + [k for k in METRICS if any(k in r for r in rows)]
    keys += [k for k in CSV_EXTRA[3:] if any(k in r for r in rows)]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(keys)
    for r in rows:
        writer.writerow([_fmt(r.get(k)) for k in keys])
    return _atomic_write(path, buf.getvalue())


def write_json(summary: Dict[str, dict], meta: dict, path) -> Path:
    return _atomic_write(path, json.dumps(_json_safe({"metrics": summary, **meta}), indent=2, default=str))


PROTOCOL_LINES = {
    "eat": "protocol: eat — each metric on its reference's inputs (EAT's 128² aligned crops, ⌊linspace⌋ pairing, "
           "5 FID frames a clip, face chips for Acc_emo, syncnet_python LSE)",
    "native": "protocol: native — full frames as generated (for one's own comparisons; the paper used EAT's inputs)",
}


def markdown_table(summary: Dict[str, dict], kind: str, label: str = "this run", notes: Optional[List[str]] = None,
                   protocol: Optional[str] = None) -> str:
    """The paper's layout: one row per method, paper rows first, ours last; † = an input step
    differs from the metric's reference (the footnote says which)."""
    head = "| method | " + " | ".join(f"{METRICS[k].label} {METRICS[k].arrow}" for k in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for method, values in PAPER_ROWS.get(kind, {}).items():
        cells = [METRICS[k].fmt.format(values[k]) if k in values else "" for k in COLUMNS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    cells, skipped = [], {}
    for k in COLUMNS:
        entry = summary.get(k, {})
        if entry.get("ok") and entry.get("value") is not None:
            mark = "" if entry.get("comparable") else "†"
            cells.append(_cell(k, entry["value"]) + mark)
        else:
            cells.append("—")
            skipped.setdefault(entry.get("reason") or "not computed", []).append(METRICS[k].label)
    footnotes = [f"- {', '.join(labels)}: skipped — {reason}" for reason, labels in skipped.items()]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
    by_difference: Dict[str, list] = {}
    clip_note = None
    for k in COLUMNS:
        entry = summary.get(k, {})
        if entry.get("ok") and entry.get("value") is not None and not entry.get("comparable"):
            differing = [s for s in entry.get("steps", []) if not s.get("match")]
            clip_note = next((s["ours"] for s in differing if s["name"] == "clips"), clip_note)
            why = "; ".join(f"{s['name']}: {s['ours']}" for s in differing if s["name"] != "clips")
            if why or not differing:
                why = why or entry.get("network", "") or "not the reference's inputs"
                by_difference.setdefault(why, []).append(METRICS[k].label + "†")
    daggers = [f"- {', '.join(labels)}: not comparable to the paper — {why}" for why, labels in by_difference.items()]
    if clip_note:
        daggers.append(f"- clips: {clip_note}, not the paper's test clips: every value above is †")
    partial = []
    for k in COLUMNS:
        entry = summary.get(k, {})
        missing = entry.get("skipped") or {}
        if entry.get("ok") and missing:
            reasons = "; ".join(sorted(set(missing.values())))
            partial.append(f"- {METRICS[k].label}: {len(missing)} of {len(missing) + entry.get('clips', 0)} clips "
                           f"have no value ({reasons})")
    out = ""
    if protocol:
        out += PROTOCOL_LINES.get(protocol, f"protocol: {protocol}") + "\n\n"
    out += "\n".join(lines) + "\n"
    if kind not in PAPER_ROWS:
        out += "\nNo paper numbers for this data (the paper reports MEAD and HDTF).\n"
    extra = daggers + partial + footnotes + [f"- note: {n}" for n in (notes or [])]
    if extra:
        out += "\n" + "\n".join(extra) + "\n"
    return out


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_distributions(rows: List[dict], path) -> Optional[Path]:
    """One box plot (with every clip as a dot) per per-clip metric."""
    keys = [k for k in COLUMNS if METRICS[k].reduce in ("frames", "clips") and any(r.get(k) is not None for r in rows)]
    if not keys:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(keys), figsize=(2.2 * len(keys) + 1, 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        values = [r[key] for r in rows if r.get(key) is not None and np.isfinite(r[key])]
        if not values:
            continue
        ax.boxplot(values, widths=0.5, showfliers=False)
        ax.scatter(np.random.default_rng(0).normal(1, 0.04, len(values)), values, s=8, alpha=0.6)
        ax.set_title(f"{METRICS[key].label} {METRICS[key].arrow}")
        ax.set_xticks([])
    fig.suptitle(f"per-clip distributions ({len(rows)} clips)")
    fig.tight_layout()
    return _save_fig(fig, path)


def plot_per_emotion(rows: List[dict], path) -> Optional[Path]:
    """Bars per MEAD emotion for each per-clip metric (MEAD names only)."""
    emotions = [e for e in EMOTIONS if any(r.get("emotion") == e for r in rows)]
    keys = [k for k in COLUMNS if METRICS[k].reduce != "dataset" and any(r.get(k) is not None for r in rows)]
    if not emotions or not keys:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(keys), figsize=(2.8 * len(keys) + 1, 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        means = []
        for e in emotions:
            vals = [r[key] for r in rows if r.get("emotion") == e and r.get(key) is not None and np.isfinite(r[key])]
            means.append(np.mean(vals) * (100 if METRICS[key].reduce == "percent" else 1) if vals else np.nan)
        ax.bar(range(len(emotions)), means, color="tab:blue")
        ax.set_xticks(range(len(emotions)), [e[:4] for e in emotions], rotation=60, fontsize=8)
        ax.set_title(f"{METRICS[key].label} {METRICS[key].arrow}")
    fig.suptitle("per emotion")
    fig.tight_layout()
    return _save_fig(fig, path)


def _save_fig(fig, path) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    _plt().close(fig)
    os.replace(tmp, path)
    return path


def write_report(result, out_dir, label: str = "this run", meta: Optional[dict] = None) -> Dict[str, Path]:
    """per_clip.csv, summary.json, table.md, per_clip.png and (MEAD) per_emotion.png in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    protocol = getattr(result, "protocol", None)
    table = markdown_table(result.summary, result.kind, label, result.notes, protocol)
    files = {
        "csv": write_csv(result.rows, out / "per_clip.csv"),
        "json": write_json(result.summary, {"protocol": protocol, "kind": result.kind, "label": label,
                                            "clips": len(result.rows), "notes": result.notes, **(meta or {}),
                                            "evaluated_clips": getattr(result, "clips", [])},
                           out / "summary.json"),
        "table": _atomic_write(out / "table.md", table),
    }
    for name, fn in (("distributions", plot_distributions), ("per_emotion", plot_per_emotion)):
        path = fn(result.rows, out / ("per_clip.png" if name == "distributions" else "per_emotion.png"))
        if path is not None:
            files[name] = path
    return files
