"""A store described: counts by dataset, subject and label, variants, settings, failures."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np

from mefeat.store import FeatureStore


def describe_store(path: str | os.PathLike) -> dict[str, Any]:
    """Everything ``mefeat inspect`` prints, as one JSON-able dict."""
    fs = FeatureStore.open(path)
    t = fs.table()
    status = t["status"].astype(str)
    labels = t["label"].astype(int)
    emotions = t["emotion"].astype(str)
    label_names = {int(lab): str(e) for lab, e in zip(labels, emotions, strict=True)}
    by_dataset = Counter(t["dataset"].astype(str))
    variants = {}
    for name in fs.variants():
        var = fs.variant(name)
        errors = var.errors()
        variants[name] = {"done": int(var.done().sum()), "maps": var.maps,
                          "settings": var.attrs.get("settings", {}),
                          "failed": {str(k): str(e) for k, e in zip(t["key"], errors,
                                                                    strict=True) if e}}
    return {
        "store": str(path),
        "samples": len(fs),
        "status": dict(Counter(status)),
        "by_dataset": dict(sorted(by_dataset.items())),
        "by_subject": dict(sorted(Counter(
            f"{d}/{s}" for d, s in zip(t["dataset"], t["subject"], strict=True)).items())),
        "by_label": {str(k): int(v) for k, v in sorted(Counter(labels.tolist()).items())},
        "label_names": {str(k): v for k, v in sorted(label_names.items())},
        "variants": variants,
        "settings": fs.config,
        "provenance": fs.attrs.get("provenance", {}),
        "failed": {str(k): str(e) for k, e, s in zip(t["key"], t["error"], status, strict=True)
                   if s == "failed"},
        "dropped": fs.attrs.get("dropped", []),
        "mean_frames": float(np.mean(t["n_frames"])) if len(fs) else 0.0,
    }


def format_description(info: dict[str, Any]) -> str:
    lines = [
        f"{info['store']}: {info['samples']} samples "
        + ", ".join(f"{k} {v}" for k, v in sorted(info["status"].items())),
        "by dataset: " + ", ".join(f"{k} {v}" for k, v in info["by_dataset"].items()),
        "by label:   " + ", ".join(
            f"{k} ({info['label_names'].get(k, '?')}) {v}" for k, v in info["by_label"].items()),
        f"subjects:   {len(info['by_subject'])}",
        "variants:",
    ]
    for name, v in info["variants"].items():
        lines.append(f"  {name}: {v['done']} done, settings {v['settings']}")
        lines += [f"    not made for {k}: {e}" for k, e in v["failed"].items()]
    lines.append(f"settings:   {info['settings']}")
    if info["failed"]:
        lines.append(f"failed ({len(info['failed'])}):")
        lines += [f"  {k}: {e}" for k, e in info["failed"].items()]
    if info["dropped"]:
        lines.append(f"left out by the reader or label scheme ({len(info['dropped'])}):")
        lines += [f"  {d['dataset']}/{d['subject']}/{d['clip']}: {d['reason']}"
                  for d in info["dropped"]]
    return "\n".join(lines)
