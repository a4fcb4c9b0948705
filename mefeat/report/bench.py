"""Bench reports: the supplement's Table 4 (UF1/UAR per key-frame condition), its Table 3
(accuracy), a plot of UF1/UAR against the key-frame error, and a t-SNE figure (Fig. 4)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mefeat.provenance import versions
from mefeat.train.metrics import metrics_table


def _load_run(out: Path, model, cond: str, run: int, folds: Sequence[str]) -> list[dict] | None:
    from mefeat.run.bench import _job_path

    jobs = []
    for fold in folds:
        path = _job_path(out, model, cond, run, fold)
        if not path.is_file():
            return None  # an unfinished run is not scored
        jobs.append(json.loads(path.read_text()))
    return jobs


def _rows(jobs: list[dict]) -> list[dict[str, Any]]:
    return [{"label": y, "prediction": p, "dataset": d}
            for j in jobs for y, p, d in zip(j["labels"], j["predictions"], j["datasets"],
                                             strict=True)]


def write_bench_reports(out: Path, models, conditions: Sequence[str], runs: int,
                        folds: Sequence[str], *, n_samples: int | None = None,
                        excluded: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Score every finished (model, condition, run); write table.csv/.md, plot, t-SNE.

    ``n_samples`` and ``excluded`` ({key: why}) say which samples every condition was
    scored on and which were left out; the Markdown tables list them.
    """
    from mefeat.run.bench import CONDITIONS

    table = []
    for m in models:
        row: dict[str, Any] = {"model": m.tag}
        for c in conditions:
            scores = []
            for r in range(runs):
                jobs = _load_run(out, m, c, r, folds)
                if jobs is not None:
                    num_classes = max(max(j["labels"] + j["predictions"]) for j in jobs) + 1
                    scores.append(metrics_table(_rows(jobs), num_classes)["overall"])
            for k in ("uf1", "uar", "acc"):
                vals = np.array([s[k] for s in scores], float)
                row[f"{c}_{k}"] = float(np.nanmean(vals)) if len(vals) else None
                row[f"{c}_{k}_std"] = float(np.nanstd(vals)) if len(vals) else None
            row[f"{c}_runs"] = len(scores)
        table.append(row)
    with (out / "table.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, list(table[0]))
        w.writeheader()
        w.writerows(table)
    notes = _sample_notes(n_samples, excluded or {})
    (out / "table.md").write_text(
        _markdown(table, conditions, ("uf1", "uar"), CONDITIONS) + notes)
    (out / "table_acc.md").write_text(_markdown(table, conditions, ("acc",), CONDITIONS) + notes)
    (out / "versions.json").write_text(json.dumps(versions(), indent=1))
    _plot(out / "robustness.png", table, conditions, CONDITIONS)
    _tsne(out, models, folds)
    return table


def _sample_notes(n_samples: int | None, excluded: dict[str, str], shown: int = 20) -> str:
    if n_samples is None:
        return ""
    lines = [f"Every condition is scored on the same {n_samples} samples."]
    if excluded:
        lines[0] += (f" {len(excluded)} sample(s) of the store are left out of every "
                     "condition (all in excluded.json):")
        lines += [f"- {key}: {why}" for key, why in sorted(excluded.items())[:shown]]
        if len(excluded) > shown:
            lines.append(f"- … and {len(excluded) - shown} more")
    return "\n" + "\n".join(lines) + "\n"


def _fmt(mean, std) -> str:
    return "—" if mean is None else f"{100 * mean:.2f} ± {100 * std:.2f}"


def _markdown(table, conditions, metrics, spec) -> str:
    head = ["Method"] + [f"{spec[c].label} {m.upper()}" for c in conditions for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table:
        cells = [row["model"]] + [_fmt(row[f"{c}_{m}"], row[f"{c}_{m}_std"])
                                  for c in conditions for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    runs = {row[f"{c}_runs"] for row in table for c in conditions}
    lines.append("")
    lines.append(f"Mean ± std over runs (runs scored: {sorted(runs)}); pooled LOSO "
                 "predictions, MEGC 2019 UF1/UAR (mean over classes), in %.")
    return "\n".join(lines) + "\n"


def _plot(path: Path, table, conditions, spec) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    noisy = [c for c in conditions if spec[c].std is not None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, metric in zip(axes, ("uf1", "uar"), strict=True):
        for row in table:
            xs = [spec[c].std for c in noisy if row[f"{c}_{metric}"] is not None]
            ys = [row[f"{c}_{metric}"] for c in noisy if row[f"{c}_{metric}"] is not None]
            line = ax.plot(xs, ys, marker="o", label=row["model"])[0]
            if "spot" in conditions and row[f"spot_{metric}"] is not None:
                ax.scatter([max(xs or [0]) + 8], [row[f"spot_{metric}"]], marker="*", s=80,
                           color=line.get_color())
        ax.set_xlabel("key-frame error STD (frames); ★ = spotted apex")
        ax.set_title(metric.upper())
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _tsne(out: Path, models, folds) -> None:
    """t-SNE of each model's held-out features (ground truth, run 0), one panel a model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    panels = []
    for m in models:
        jobs = _load_run(out, m, "gt", 0, folds)
        if not jobs or any("features" not in j for j in jobs):
            continue
        feats = np.concatenate([np.asarray(j["features"], float) for j in jobs])
        labels = np.concatenate([j["labels"] for j in jobs])
        if len(feats) < 5:
            continue
        emb = TSNE(n_components=2, perplexity=min(30, len(feats) - 1), init="pca",
                   random_state=0).fit_transform(feats)
        panels.append((m.tag, emb, labels))
    if not panels:
        return
    cols = min(4, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (tag, emb, labels) in zip(axes.ravel(), panels, strict=False):
        ax.scatter(emb[:, 0], emb[:, 1], c=labels, cmap="tab10", s=8)
        ax.set_title(tag, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(panels):]:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(out / "tsne.png", dpi=100)
    plt.close(fig)
