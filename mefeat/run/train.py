"""``train`` and ``evaluate``: a registered model under LOSO on a store variant, with reports.

Outputs in ``out``: ``metrics.json`` (UF1/UAR/accuracy overall and per dataset, mean and
std over runs, the epoch-selection policy, settings and library versions),
``predictions.csv`` (key, dataset, subject, label, prediction, fold, run), a confusion
matrix PNG, and (``train``) safetensors checkpoints when the trainer returns fold weights.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mefeat.errors import ModelError
from mefeat.provenance import versions
from mefeat.views.data import ViewData, load_view

SELECTION_NOTES = {
    "last": "fixed epochs; the last epoch's predictions (nothing chosen on the test subject)",
    "test-best": "TEST-BEST: the epoch with the best accuracy on each held-out subject "
                 "(the official repositories' practice; optimistic, for reproduction only)",
}


def _summarise(per_run: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std over runs of the overall and per-dataset scores."""
    def agg(get):
        vals = np.array([get(r) for r in per_run], dtype=float)
        return float(np.nanmean(vals)), float(np.nanstd(vals))

    out: dict[str, Any] = {"std": {}, "per_dataset": {}}
    for m in ("uf1", "uar", "acc"):
        out[m], out["std"][m] = agg(lambda r, m=m: r["overall"][m])
    for ds in per_run[0]["per_dataset"]:
        entry: dict[str, Any] = {"std": {}}
        for m in ("uf1", "uar", "acc"):
            entry[m], entry["std"][m] = agg(lambda r, m=m, ds=ds: r["per_dataset"][ds][m])
        out["per_dataset"][ds] = entry
    return out


def write_reports(out: Path, data: ViewData, rows: list[dict[str, Any]],
                  per_run: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """Write metrics.json, predictions.csv and the confusion matrix; return the metrics."""
    out.mkdir(parents=True, exist_ok=True)
    result = {**_summarise(per_run), "runs": per_run, **meta,
              "classes": list(data.classes), "n_samples": len(data),
              "versions": versions()}
    (out / "metrics.json").write_text(json.dumps(result, indent=2, default=str))
    with (out / "predictions.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["key", "dataset", "subject", "label", "prediction", "fold",
                               "run"])
        w.writeheader()
        w.writerows(rows)
    from mefeat.report.figures import confusion_figure

    confusion_figure(per_run[-1]["overall"]["confusion"], data.classes,
                     out / "confusion.png",
                     title=f"{meta['model']} — {meta['variant']} ({meta['selection']})")
    return result


def _prediction_rows(data: ViewData, index, prediction, run: int) -> list[dict[str, Any]]:
    return [
        {"key": data.keys[i], "dataset": data.datasets[i], "subject": data.subjects[i],
         "label": int(data.labels[i]), "prediction": int(p), "fold": data.subjects[i],
         "run": run}
        for i, p in zip(index, prediction, strict=True)
    ]


def run_training(
    model: str, store: str | os.PathLike, *, out: str | os.PathLike, variant: str = "gt",
    epochs: int | None = None, runs: int = 1, seed: int = 0, selection: str = "last",
    device: str = "cpu", folds: int | None = None, model_options: dict | None = None,
    amp: bool = False, checkpoints: bool = True, workers: int = 1,
) -> dict[str, Any]:
    """Train ``model`` under LOSO ``runs`` times (seeds ``seed``, ``seed+1``...).

    With ``checkpoints``, the last run's fold models are saved as safetensors, one file per
    held-out subject (``evaluate`` reads them back). ``workers``: CPU fold processes
    (see ``train_loso``).
    """
    from mefeat.models import get_spec
    from mefeat.train.trainer import train_loso

    spec = get_spec(model)
    data = load_view(store, variant=variant, view=spec.view)
    num_classes = data.num_classes
    rows, per_run, results = [], [], []
    for r in range(runs):
        res = train_loso(model, data.inputs, data.labels, data.subjects, epochs=epochs,
                         selection=selection, seed=seed + r, device=device, folds=folds,
                         model_options=model_options, num_classes=num_classes, amp=amp,
                         return_states=checkpoints and r == runs - 1, workers=workers)
        results.append(res)
        preds = res.predictions
        idx = np.asarray(preds["index"])
        rows += _prediction_rows(data, idx, np.asarray(preds["prediction"]), r)
        m = res.metrics()
        m["seed"] = seed + r
        m["wall_seconds"] = res.wall_seconds
        m["fold_seconds"] = res.fold_seconds
        if res.best_epoch:
            m["best_epoch"] = res.best_epoch
        per_run.append(m)
    meta = {"model": model, "variant": variant, "store": str(store), "selection": selection,
            "selection_note": SELECTION_NOTES[selection], "epochs": results[0].epochs,
            "settings": results[0].settings, "model_options": model_options or {},
            "official_format": data.official_format}
    out = Path(out)
    metrics = write_reports(out, data, rows, per_run, meta)
    _save_fold_weights(out, results[-1], model, meta)
    return metrics


def _save_fold_weights(out: Path, result, model: str, meta: dict[str, Any]) -> None:
    states = result.states
    if not states:
        return
    from mefeat.models import create_model
    from mefeat.train.checkpoints import save_checkpoint

    ckpt = out / "checkpoints"
    ckpt.mkdir(exist_ok=True)
    for subject, state in states.items():
        net = create_model(model, num_classes=result.num_classes, **meta["model_options"])
        net.load_state_dict(state)
        save_checkpoint(net, ckpt / f"{subject.replace('/', '_')}.safetensors",
                        {"model": model, "subject": subject, "selection": meta["selection"]})


def _find_checkpoint(folder: Path, subject: str) -> Path:
    dataset, _, sub = subject.partition("/")
    for stem in (sub, f"{dataset}_{sub}", subject.replace("/", "_")):
        for ext in (".safetensors", ".pth", ".pt"):
            if (folder / f"{stem}{ext}").is_file():
                return folder / f"{stem}{ext}"
    raise ModelError(
        f"{folder}: no checkpoint for held-out subject {subject!r} (looked for {sub}.pth, "
        f"{sub}.safetensors, {dataset}_{sub}.*); name each file after its subject"
    )


def run_evaluation(
    model: str, store: str | os.PathLike, *, checkpoints: str | os.PathLike,
    out: str | os.PathLike, variant: str = "gt", device: str = "cpu",
    model_options: dict | None = None,
) -> dict[str, Any]:
    """Evaluate per-subject checkpoints under LOSO: each held-out subject by its own file."""
    import torch

    from mefeat.models import create_model, get_spec
    from mefeat.train.checkpoints import load_official_state_dict

    spec = get_spec(model)
    data = load_view(store, variant=variant, view=spec.view)
    num_classes = data.num_classes
    folder = Path(checkpoints)
    rows = []
    for subject in sorted(set(data.subjects)):
        path = _find_checkpoint(folder, subject)
        net = create_model(model, num_classes=num_classes, **(model_options or {}))
        state = load_official_state_dict(path)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelError(f"{path}: does not fit model {model!r}: {exc}") from None
        net.to(device).eval()
        idx = np.flatnonzero(data.subjects == subject)
        with torch.no_grad():
            xs = tuple(torch.from_numpy(x[idx]).to(device) for x in data.inputs)
            logits = net(xs[0] if len(xs) == 1 else xs)
        rows += _prediction_rows(data, idx, logits.argmax(1).cpu().numpy(), 0)
    from mefeat.train.metrics import metrics_table

    table = metrics_table(rows, num_classes)
    meta = {"model": model, "variant": variant, "store": str(store),
            "selection": "checkpoints", "selection_note": f"given checkpoints from {folder}",
            "official_format": data.official_format}
    return write_reports(Path(out), data, rows, [table], meta)
