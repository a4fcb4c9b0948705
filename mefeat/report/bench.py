"""Bench reports: the supplement's Table 4 (UF1/UAR per key-frame condition), its Table 3
(accuracy), a plot of UF1/UAR against the key-frame error, and a t-SNE figure (Fig. 4).

Each job kept its fold's held-out predictions after the epochs the bench's selection policy
needs; a (model, condition, run) is scored once all its folds are done, by applying the
policy to the pooled per-epoch record (an ``all-folds`` official rule needs every fold).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mefeat.keyframes import bench_columns
from mefeat.metrics import metrics_table
from mefeat.provenance import environment
from mefeat.recipes import Recipe
from mefeat.recipes.selection import (
    choose_epochs,
    counted_scores,
    rule_of,
    selected_predictions,
)
from mefeat.report.bench_plan import BenchModel, load_run
from mefeat.report.train import as_counted, mean_std


def score_run(jobs: list[dict], policy: str, num_classes: int) -> dict[str, Any]:
    """``metrics_table`` of one run's pooled predictions under ``policy``, by the rules of
    the recipe the jobs recorded (not the registry's of today)."""
    recipe = Recipe.from_dict(jobs[0]["recipe"], model=jobs[0]["model"])
    kept = jobs[0].get("kept") or list(range(1, jobs[0]["epochs"] + 1))
    labels = np.concatenate([np.asarray(j["labels"], np.int64) for j in jobs])
    preds = np.concatenate([np.asarray(j["epoch_predictions"], np.int64).reshape(len(kept), -1)
                            for j in jobs], axis=1)
    folds, start = [], 0
    for j in jobs:
        folds.append((j["fold"], np.arange(start, start + len(j["labels"]))))
        start += len(j["labels"])
    rule = rule_of(policy, recipe.official)
    chosen = choose_epochs(rule, preds, kept, labels, folds, num_classes, recipe.epochs)
    pred, _ = selected_predictions(chosen, preds, kept, folds, len(labels))
    datasets = [d for j in jobs for d in j["datasets"]]
    rows = [{"label": int(y), "prediction": int(p), "dataset": d}
            for y, p, d in zip(labels, pred, datasets, strict=True)]
    table = metrics_table(rows, num_classes)
    counted = counted_scores(rule, chosen, preds, kept, labels, folds, num_classes)
    if counted is not None:
        table["as_counted"] = counted
    return table


def write_bench_reports(out: Path, models: Sequence[BenchModel], conditions: Sequence[str],
                        runs: int, folds: Sequence[str], *, selection: str = "last",
                        num_classes: int, classes: Sequence[str] = (),
                        n_samples: int | None = None,
                        excluded: dict[str, str] | None = None,
                        inputs: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Score every finished (model, condition, run); write table.csv/.md, plot, t-SNE.

    ``n_samples`` and ``excluded`` ({key: why}) say which samples every condition was
    scored on and which were left out; the Markdown tables list them. ``inputs``: the rows
    that trained on their official inputs, ``{tag: {"flow_size", "view_options"}}``.
    """
    columns = bench_columns()
    table = []
    for m in models:
        row: dict[str, Any] = {"model": m.tag}
        for c in conditions:
            scored = []
            for r in range(runs):
                jobs = load_run(out, m, c, r, list(folds))
                if jobs is not None:
                    scored.append(score_run(jobs, selection, num_classes))
            scores = [s["overall"] for s in scored]
            for k in ("uf1", "uar", "acc"):
                mean, std = mean_std([s[k] for s in scores])
                row[f"{c}_{k}"] = mean if scores else None
                row[f"{c}_{k}_std"] = std if scores else None
            row[f"{c}_runs"] = len(scores)
            counted = as_counted(scored) if scored else None
            if counted is not None:
                row["counting"] = counted["counting"]
                for k in ("uf1", "uar", "acc"):
                    row[f"{c}_counted_{k}"] = counted[k]
                row[f"{c}_counted_dropped"] = max(len(d) for d in counted["folds_dropped"])
        row.setdefault("counting", "pooled")
        table.append(row)
    with (out / "table.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, list(dict.fromkeys(k for row in table for k in row)))
        w.writeheader()
        w.writerows(table)
    notes = (f"\nEpoch selection: {selection}.\n" + _counted_markdown(table, conditions, columns)
             + _sample_notes(n_samples, excluded or {}) + _input_notes(inputs or {})
             + _deviation_notes(models))
    (out / "table.md").write_text(_markdown(table, conditions, ("uf1", "uar"), columns) + notes)
    (out / "table_acc.md").write_text(_markdown(table, conditions, ("acc",), columns) + notes)
    (out / "environment.json").write_text(json.dumps(environment(), indent=1))
    _plot(out / "robustness.png", table, conditions, columns, selection)
    _tsne(out, models, folds, classes, selection)
    return table


def _counted_markdown(table, conditions, columns) -> str:
    """The rows whose paper counts otherwise than pooled, as that paper counts them."""
    rows = [row for row in table if row["counting"] != "pooled"]
    if not rows:
        return ""
    head = ["Method", "counting"] + [f"{columns[c].label} {m.upper()}" for c in conditions
                                     for m in ("uf1", "uar", "acc")]
    lines = ["", "As each paper counts (mean over runs; the table above pools every held-out "
             "sample, as MEGC 2019 does):", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["model"], row["counting"]]
        for c in conditions:
            dropped = row.get(f"{c}_counted_dropped")
            for m in ("uf1", "uar", "acc"):
                v = row.get(f"{c}_counted_{m}")
                cells.append("—" if v is None else f"{100 * v:.2f}"
                             + (f" ({dropped} folds dropped)" if dropped and m == "uar" else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _input_notes(inputs: dict[str, dict[str, Any]]) -> str:
    """The rows trained on their official inputs, and what those are."""
    if not inputs:
        return ""
    lines = []
    for tag, made in inputs.items():
        opts = ", ".join(f"{k}={v}" for k, v in made["view_options"].items())
        lines.append(f"- {tag}: TV-L1 (OpenCV's defaults) on the aligned frames resized to "
                     f"{made['flow_size']} px" + (f"; view options {opts}" if opts else ""))
    return ("\nOfficial inputs (the other rows use the store's flow):\n" + "\n".join(lines)
            + "\n")


def _deviation_notes(models: Sequence[BenchModel]) -> str:
    """What each model's official training does that mefeat does not (``ModelSpec``)."""
    from mefeat.models import get_spec

    lines = [f"- {name}: {d}" for name in dict.fromkeys(m.name for m in models)
             for d in get_spec(name).deviations]
    if not lines:
        return ""
    return "\nWhere a row departs from its official training:\n" + "\n".join(lines) + "\n"


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


def _markdown(table, conditions, metrics, columns) -> str:
    head = ["Method"] + [f"{columns[c].label} {m.upper()}" for c in conditions for m in metrics]
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


def _plot(path: Path, table, conditions, columns, selection: str) -> None:
    """UF1 and UAR against the key-frame error STD; columns without one (a spotted apex)
    as star markers after the noisy ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    on_axis = [c for c in conditions if columns[c].error_std is not None]
    markers = [c for c in conditions if columns[c].error_std is None]
    right = max([columns[c].error_std for c in on_axis] or [0])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, metric in zip(axes, ("uf1", "uar"), strict=True):
        for row in table:
            xs = [columns[c].error_std for c in on_axis if row[f"{c}_{metric}"] is not None]
            ys = [row[f"{c}_{metric}"] for c in on_axis if row[f"{c}_{metric}"] is not None]
            line = ax.plot(xs, ys, marker="o", label=row["model"])[0]
            for i, c in enumerate(markers):
                if row[f"{c}_{metric}"] is not None:
                    ax.scatter([right + 8 * (i + 1)], [row[f"{c}_{metric}"]], marker="*", s=80,
                               color=line.get_color())
        extra = ", ".join(f"★{i + 1} = {columns[c].label}" for i, c in enumerate(markers))
        ax.set_xlabel("key-frame error STD (frames)" + (f"; {extra}" if extra else ""))
        ax.set_title(metric.upper())
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"Robustness to key-frame errors (epoch selection: {selection})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _tsne(out: Path, models, folds, classes: Sequence[str], selection: str) -> None:
    """t-SNE of each model's held-out features (ground truth, run 0), one panel a model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    panels = []
    for m in models:
        jobs = load_run(out, m, "gt", 0, list(folds))
        if not jobs or any("features" not in j for j in jobs):
            continue
        feats = np.concatenate([np.asarray(j["features"], float) for j in jobs])
        labels = np.concatenate([j["labels"] for j in jobs])
        if len(feats) < 5:
            continue
        emb = TSNE(n_components=2, perplexity=min(30, len(feats) - 1), init="pca",
                   random_state=0).fit_transform(feats)
        panels.append((m.tag, emb, labels, jobs[0]["variant"]))
    if not panels:
        return
    cols = min(4, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows + 0.6), squeeze=False)
    cmap = plt.get_cmap("tab10")
    present = sorted({int(v) for _, _, lab, _ in panels for v in lab})
    for ax, (tag, emb, labels, _) in zip(axes.ravel(), panels, strict=False):
        for c in present:
            pick = labels == c
            ax.scatter(emb[pick, 0], emb[pick, 1], s=8, color=cmap(c % 10),
                       label=classes[c] if c < len(classes) else f"class {c}")
        ax.set_title(tag, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(panels):]:
        ax.set_axis_off()
    handles, names = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=8)
    fig.suptitle(f"t-SNE of held-out features — variant {panels[0][3]}, final epoch "
                 f"(bench selection: {selection})", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    fig.savefig(out / "tsne.png", dpi=100)
    plt.close(fig)
