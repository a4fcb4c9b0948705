"""Reports of a training (or evaluation) run: ``metrics.json``, ``predictions.csv`` and the
confusion matrix, and the one-screen summary ``mefeat train`` prints.

``metrics.json`` holds the scores of the run's selection policy at its top level (UF1, UAR,
accuracy overall and per dataset, mean and std over runs), the same for every policy the
run kept under ``policies`` (``last`` always, so a chosen-epoch score always stands next to
the honest one), each run's scores under ``runs``, and ``settings`` (the recipe that ran,
the overrides, the fold batching path) and library versions.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mefeat.provenance import environment

METRICS = ("uf1", "uar", "acc")


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) std over runs, NaN-aware."""
    vals = np.asarray(values, dtype=float)
    if not len(vals) or np.isnan(vals).all():
        return float("nan"), float("nan")
    return float(np.nanmean(vals)), float(np.nanstd(vals))


def summarise(per_run: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std over runs of the overall and per-dataset scores."""
    out: dict[str, Any] = {"std": {}, "per_dataset": {}}
    for m in METRICS:
        out[m], out["std"][m] = mean_std([r["overall"][m] for r in per_run])
    for ds in per_run[0]["per_dataset"]:
        entry: dict[str, Any] = {"std": {}}
        for m in METRICS:
            entry[m], entry["std"][m] = mean_std([r["per_dataset"][ds][m] for r in per_run])
        out["per_dataset"][ds] = entry
    return out


def write_reports(out: Path, classes: Sequence[str], n_samples: int, rows: list[dict[str, Any]],
                  per_run: list[dict[str, Any]], meta: dict[str, Any],
                  policies: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Write metrics.json, predictions.csv and the confusion matrix; return the metrics.

    ``per_run``: the selection policy's scores of each run; ``policies``: every kept
    policy's scores of each run (``{policy: per_run}``).
    """
    out.mkdir(parents=True, exist_ok=True)
    result = {**summarise(per_run), "runs": per_run, **meta, "classes": list(classes),
              "n_samples": n_samples, "environment": environment()}
    if policies:
        result["policies"] = {p: {**summarise(runs), "note": meta["selection_notes"][p]}
                              for p, runs in policies.items()}
    (out / "metrics.json").write_text(json.dumps(result, indent=2, default=str))
    with (out / "predictions.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["key", "dataset", "subject", "label", "prediction", "epoch",
                               "fold", "run"])
        w.writeheader()
        w.writerows(rows)
    from mefeat.report.figures import confusion_figure

    confusion_figure(per_run[-1]["overall"]["confusion"], classes, out / "confusion.png",
                     title=f"{meta['model']} — {meta['variant']} ({meta['selection']})")
    return result


def summary_lines(m: dict[str, Any]) -> list[str]:
    """The one-screen summary of a run's ``metrics.json``."""
    lines = [f"{m['model']} on {m['variant']} — selection {m['selection']}: "
             f"{m['selection_note']}",
             f"  overall   UF1 {m['uf1']:.4f} ± {m['std']['uf1']:.4f}  "
             f"UAR {m['uar']:.4f} ± {m['std']['uar']:.4f}  ACC {m['acc']:.4f}"]
    for ds, v in m["per_dataset"].items():
        lines.append(f"  {ds:<9} UF1 {v['uf1']:.4f}  UAR {v['uar']:.4f}  ACC {v['acc']:.4f}")
    for p, v in m.get("policies", {}).items():
        if p != m["selection"]:
            lines.append(f"  [{p}] UF1 {v['uf1']:.4f}  UAR {v['uar']:.4f}  ACC {v['acc']:.4f}")
    settings = m.get("settings", {})
    if settings.get("overrides"):
        lines.append(f"  overrides of the recipe: {settings['overrides']}")
    if "wall_seconds" in (m["runs"][0] if m.get("runs") else {}):
        wall = sum(r["wall_seconds"] for r in m["runs"])
        lines.append(f"  {len(m['runs'])} run(s), {wall:.1f} s; "
                     f"{settings.get('fold_batching', '')}")
    return lines
