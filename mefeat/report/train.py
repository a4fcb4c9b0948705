"""Reports of a training (or evaluation) run, from the folds its run folder holds:
``metrics.json``, ``predictions.csv``, ``history.csv``, the confusion matrix, the learning
curves (and TensorBoard event files on request), and the one-screen summary ``mefeat train``
prints.

``metrics.json`` holds the scores of the run's selection policy at its top level (UF1, UAR,
accuracy overall and per dataset, mean and std over runs, every held-out sample pooled:
``counting`` says so), beside it ``as_counted`` where the rule's paper counts otherwise
(the OFF-TANet repository's mean of per-fold scores, CausalNet's pooling without the folds
whose accuracy never rose above 0, with those folds named), the same for every policy under
``policies`` (``last`` always, so a chosen-epoch score always stands next to the honest one),
each run's scores under ``runs``, how much of the data was scored (``folds_scored`` of
``folds_total``, ``samples_scored`` of ``samples_total``, ``missing_folds``), the
``warnings`` of the data, the ``settings`` and the ``environment``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mefeat.files import write_atomic
from mefeat.recipes.selection import note
from mefeat.train import LosoResult, RunRecord

METRICS = ("uf1", "uar", "acc")
HISTORY = ("train_loss", "test_loss", "test_acc", "lr")


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
            entry[m], entry["std"][m] = mean_std([r["per_dataset"][ds][m] for r in per_run
                                                  if ds in r["per_dataset"]])
        out["per_dataset"][ds] = entry
    return out


def as_counted(per_run: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The runs' figure as the paper counts it (mean and std over runs), with the counting
    named and each run's dropped folds; ``None`` where the paper pools as mefeat does."""
    counted = [r["as_counted"] for r in per_run if "as_counted" in r]
    if not counted:
        return None
    out: dict[str, Any] = {k: counted[0][k] for k in ("counting", "description")}
    out["std"] = {}
    for m in METRICS:
        out[m], out["std"][m] = mean_std([c[m] for c in counted])
    out["folds_counted"] = [c["folds_counted"] for c in counted]
    out["folds_dropped"] = [c["folds_dropped"] for c in counted]
    return out


def run_metrics(record: RunRecord, results: list[LosoResult], *,
                meta: dict[str, Any] | None = None, selection: str | None = None
                ) -> dict[str, Any]:
    """The ``metrics.json`` of a run's results (runs without a fold left out), under the
    run's own policy or ``selection``."""
    headline = selection or record.selection
    scored = [r for r in results if r.folds]
    policies = [headline] + (["last"] if headline != "last" else [])
    per_policy = {p: [r.metrics(p) for r in scored] for p in policies}
    per_run = per_policy[headline]
    first = per_run[0]
    coverage = {k: first[k] for k in ("folds_scored", "folds_total", "samples_scored",
                                       "samples_total", "missing_folds")}
    official = results[0].recipe.official
    return {
        **summarise(per_run), **coverage,
        "partial": bool(first["missing_folds"]) or len(scored) < record.runs,
        "runs": per_run, "runs_scored": len(scored), "runs_total": record.runs,
        "model": record.model, "view": record.view, "variant": record.data.get("variant"),
        "store": record.data.get("store"), "selection": headline,
        "selection_note": note(headline, official),
        "counting": first["counting"],
        **({"as_counted": counted} if (counted := as_counted(per_run)) else {}),
        "policies": {p: {**summarise(runs), "note": note(p, official),
                         **({"as_counted": c} if (c := as_counted(runs)) else {})}
                     for p, runs in per_policy.items()},
        "epochs": results[0].epochs, "classes": record.classes,
        "model_options": record.model_options, "view_options": record.view_options,
        "official_format": record.official_format, "warnings": record.warnings,
        "settings": {**results[0].settings, "seeds": [record.seed + r for r in
                                                      range(record.runs)]},
        "wall_seconds": results[0].wall_seconds,
        "fold_seconds": {f.subject: f.seconds for r in scored for f in r.folds},
        "checkpoints": _checkpoint_summary(record, scored), "environment": record.environment,
        **(meta or {}),
    }


def _checkpoint_summary(record: RunRecord, scored: list[LosoResult]) -> dict[str, Any]:
    kept = [f.checkpoint for r in scored for f in r.folds if f.checkpoint]
    return {"kept": record.checkpoints, "dtype": record.checkpoint_dtype, "files": len(kept),
            "bytes": sum(c.get("bytes", 0) for c in kept),
            "epochs": sorted({c["epoch"] for c in kept}),
            "replayed": sum(bool(c.get("replayed")) for c in kept),
            "not_reproduced": [f.subject for r in scored for f in r.folds if f.checkpoint
                               and f.checkpoint.get("reproduces_predictions") is False]}


def write_reports(out: Path, record: RunRecord, results: list[LosoResult], *,
                  tensorboard: bool = False, meta: dict[str, Any] | None = None,
                  selection: str | None = None) -> dict[str, Any]:
    """Write metrics.json, predictions.csv, history.csv, the confusion matrix and the
    learning curves of the folds present, under the run's policy or ``selection``; return
    the metrics."""
    from mefeat.report.figures import confusion_figure, learning_curves

    out = Path(out)
    if not any(r.folds for r in results):
        from mefeat.train import TrainingError

        raise TrainingError(f"{out}: no fold of the run has finished yet; nothing to score")
    metrics = run_metrics(record, results, meta=meta, selection=selection)
    headline = selection or record.selection
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2, default=str))
    rows = [{**{k: row[k] for k in ("key", "dataset", "subject", "label", "prediction",
                                    "epoch")}, "fold": row["subject"], "run": row["run"]}
            for r in results if r.folds
            for row in r.predictions_for(headline).to_dict("records")]
    _write_csv(out / "predictions.csv", rows, ("key", "dataset", "subject", "label",
                                                "prediction", "epoch", "fold", "run"))
    # (folds recorded by an earlier mefeat have no history)
    history = [{"run": f.run, "subject": f.subject, "epoch": e + 1,
                **{h: f.history[h][e] for h in HISTORY}}
               for r in results for f in r.folds
               for e in range(len(f.history.get("train_loss", [])))]
    _write_csv(out / "history.csv", history, ("run", "subject", "epoch", *HISTORY))
    confusion_figure(metrics["runs"][-1]["overall"]["confusion"], record.classes,
                     out / "confusion.png",
                     title=f"{record.model} — {metrics['variant']} ({metrics['selection']})")
    if history:
        learning_curves(history, out / "learning_curves.png",
                        title=f"{record.model} — mean over {metrics['folds_scored']} folds")
    if tensorboard:
        write_tensorboard(out / "tensorboard", history)
    return metrics


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, list(columns))
            w.writeheader()
            w.writerows(rows)

    write_atomic(path, write)


def require_tensorboard():
    """torch's ``SummaryWriter``, or a clear refusal where TensorBoard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch's writer needs the tensorboard package
        from mefeat.errors import MefeatError

        raise MefeatError(f"--tensorboard needs TensorBoard ({exc}): pip install tensorboard"
                          ) from None
    return SummaryWriter


def write_tensorboard(folder: Path, history: list[dict[str, Any]]) -> None:
    """One TensorBoard run per fold (``run<r>/<subject>``): the per-epoch history."""
    SummaryWriter = require_tensorboard()  # noqa: N806 (a class)
    writers: dict[tuple[int, str], Any] = {}
    for row in history:
        key = (row["run"], row["subject"])
        if key not in writers:
            writers[key] = SummaryWriter(str(folder / f"run{row['run']}" /
                                             row["subject"].replace("/", "_")))
        for h in HISTORY:
            writers[key].add_scalar(h, row[h], row["epoch"])
    for w in writers.values():
        w.close()


def counted_line(c: dict[str, Any]) -> str:
    """The paper-counted figure in one line, naming the counting and any dropped folds."""
    dropped = sorted({s for run in c["folds_dropped"] for s in run})
    text = (f"as the paper counts ({c['counting']}: {c['description']}): UF1 {c['uf1']:.4f}  "
            f"UAR {c['uar']:.4f}  ACC {c['acc']:.4f}")
    if c["counting"] == "nonzero-folds":
        text += (f"; {max(len(d) for d in c['folds_dropped'])} fold(s) dropped"
                 + (f": {', '.join(dropped[:6])}" + (" …" if len(dropped) > 6 else "")
                    if dropped else ""))
    return text


def summary_lines(m: dict[str, Any]) -> list[str]:
    """The one-screen summary of a run's ``metrics.json``."""
    several = m.get("runs_scored", len(m.get("runs", []))) > 1

    def score(v: dict[str, Any], key: str) -> str:
        text = f"{key.upper()} {v[key]:.4f}"
        return text + (f" ± {v['std'][key]:.4f}" if several and "std" in v else "")

    lines = [f"{m['model']} on {m['variant']} — selection {m['selection']}: "
             f"{m['selection_note']}"]
    if m.get("rescored_from"):
        lines.append(f"  rescored under {m['selection']} (the run was made with selection "
                     f"{m['rescored_from']})")
    if m.get("partial"):
        lines.append(f"  PARTIAL: {m['folds_scored']} of {m['folds_total']} folds, "
                     f"{m['samples_scored']} of {m['samples_total']} samples scored"
                     + (f", {m['runs_scored']} of {m['runs_total']} runs" if
                        m.get("runs_total", 1) > 1 else "")
                     + f"; missing: {', '.join(m['missing_folds'][:5])}"
                     + (" …" if len(m["missing_folds"]) > 5 else ""))
    lines.append(f"  overall   {score(m, 'uf1')}  {score(m, 'uar')}  ACC {m['acc']:.4f}"
                 "  (pooled)")
    if m.get("as_counted"):
        lines.append("  " + counted_line(m["as_counted"]))
    for ds, v in m["per_dataset"].items():
        lines.append(f"  {ds:<9} UF1 {v['uf1']:.4f}  UAR {v['uar']:.4f}  ACC {v['acc']:.4f}")
    for p, v in m.get("policies", {}).items():
        if p != m["selection"]:
            lines.append(f"  [{p}] UF1 {v['uf1']:.4f}  UAR {v['uar']:.4f}  ACC {v['acc']:.4f}")
    settings = m.get("settings", {})
    if settings.get("overrides"):
        lines.append(f"  overrides of the recipe: {settings['overrides']}")
    ck = m.get("checkpoints") or {}
    if ck.get("files"):
        lines.append(f"  checkpoints: {ck['files']} files ({ck['dtype']}), "
                     f"{ck['bytes'] / 2**20:.1f} MiB")
    for w in m.get("warnings", []):
        lines.append(f"  WARNING: {w}")
    if m.get("wall_seconds") is not None and settings.get("fold_batching"):
        lines.append(f"  {m['wall_seconds']:.1f} s; {settings['fold_batching']}")
    return lines
