"""``train`` and ``evaluate``: a registered model under LOSO on a store variant.

``train`` reads the model's view of the variant, trains it by its recipe (with the given
overrides) ``runs`` times, and hands the predictions to ``mefeat.report.train``:
``metrics.json``, ``predictions.csv`` (key, dataset, subject, label, prediction, epoch,
fold, run), the confusion matrix; and, for the last run, one safetensors checkpoint per
held-out subject in ``checkpoints/`` with ``checkpoints/run.json`` (model, view and view
options, model options, classes, the recipe, and how the store's variant was made: its
settings and size, the alignment), which ``evaluate`` and ``predict`` read back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mefeat.errors import ModelError
from mefeat.report.train import write_reports
from mefeat.store import FeatureStore
from mefeat.views.data import ViewData, load_view


def _prediction_rows(data: ViewData, table, run: int) -> list[dict[str, Any]]:
    return [
        {"key": data.keys[i], "dataset": data.datasets[i], "subject": data.subjects[i],
         "label": int(data.labels[i]), "prediction": int(p), "epoch": int(e),
         "fold": data.subjects[i], "run": run}
        for i, p, e in zip(table["index"], table["prediction"], table["epoch"], strict=True)
    ]


def run_training(
    model: str, store: str | os.PathLike, *, out: str | os.PathLike,
    variant: str | None = None, epochs: int | None = None, lr: float | None = None,
    batch_size: int | str | None = None, precision: str | None = None, runs: int = 1,
    seed: int | None = None, selection: str = "last", device: str = "cpu",
    folds: int | None = None, model_options: dict | None = None,
    view_options: dict | None = None, checkpoints: bool = True, workers: int = 1,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``model`` under LOSO ``runs`` times (seeds ``seed``, ``seed+1``...; ``None``:
    the recipe's seed, else 0) and write the reports into ``out``.

    ``selection`` is the policy of the headline scores; ``last`` is always reported beside
    it. ``workers``: CPU fold processes (see ``train_loso``). ``progress``: a progress bar
    on the terminal (epochs of all folds and runs, with an ETA).
    """
    from mefeat.models import get_spec
    from mefeat.train import selection as sel
    from mefeat.train.trainer import train_loso

    spec = get_spec(model)
    fs = FeatureStore.open(store)
    variant = fs.pick_variant(variant)
    made_with = {"variant_settings": fs.variant(variant).attrs.get("settings", {}),
                 "variant_size": fs.variant(variant).attrs.get("size"),
                 "align": fs.config.get("align"), "dataset": fs.config.get("dataset")}
    jitter = spec.recipe and spec.recipe.keyframe_jitter
    data = load_view(store, variant=variant, view=spec.view, options=view_options,
                     jitter=jitter)
    num_classes = data.num_classes
    policies = [selection] + (["last"] if selection != "last" else [])
    rows, per_run = [], []
    per_policy: dict[str, list] = {p: [] for p in policies}
    bar = _ProgressBar(runs, model) if progress else None
    results = []
    for r in range(runs):
        res = train_loso(model, data.inputs, data.labels, data.subjects, epochs=epochs, lr=lr,
                         batch_size=batch_size, precision=precision, selection=selection,
                         seed=None if seed is None else seed + r, device=device, folds=folds,
                         model_options=model_options, num_classes=num_classes,
                         jitter=data.jitter, return_states=checkpoints and r == runs - 1,
                         workers=workers, progress=bar.hook(r) if bar else None)
        if seed is None:  # the recipe's seed: runs after the first count up from it
            seed = res.seed
        results.append(res)
        rows += _prediction_rows(data, res.predictions, r)
        for p in policies:
            m = res.metrics(p)
            m.update(seed=res.seed, wall_seconds=res.wall_seconds, fold_seconds=res.fold_seconds)
            if p != "last":
                m["chosen_epoch"] = res.chosen[p]
            per_policy[p].append(m)
        per_run.append(per_policy[selection][-1])
    if bar:
        bar.close()
    first = results[0]
    meta = {"model": model, "view": spec.view, "variant": variant, "store": str(store),
            "selection": selection,
            "selection_note": sel.note(selection, first.recipe),
            "selection_notes": {p: sel.note(p, first.recipe) for p in policies},
            "epochs": first.epochs, "settings": first.settings,
            "model_options": model_options or {}, "view_options": data.options,
            "official_format": data.official_format, "store_settings": made_with}
    out = Path(out)
    metrics = write_reports(out, data.classes, len(data), rows, per_run, meta, per_policy)
    _save_fold_weights(out, results[-1], model, {**meta, "classes": list(data.classes)})
    return metrics


class _ProgressBar:
    """A tqdm bar over every epoch of every fold of every run."""

    def __init__(self, runs: int, model: str) -> None:
        from tqdm import tqdm

        self.runs = runs
        self.bar = tqdm(desc=f"train {model}", unit="epoch")

    def hook(self, run: int):
        def update(done: int, total: int) -> None:
            if self.bar.total is None:
                self.bar.total = total * self.runs
            self.bar.n = run * total + done
            self.bar.set_postfix_str(f"run {run + 1}/{self.runs}", refresh=False)
            self.bar.refresh()
        return update

    def close(self) -> None:
        self.bar.close()


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
                        {"model": model, "subject": subject, "selection": meta["selection"],
                         "epoch": str(result.epochs)})
    (ckpt / "run.json").write_text(json.dumps(
        {"model": model, "view": meta["view"], "variant": meta["variant"],
         "model_options": meta["model_options"], "view_options": meta["view_options"],
         "classes": meta["classes"], "num_classes": result.num_classes,
         "recipe": meta["settings"]["recipe"], "official_format": meta["official_format"],
         **meta["store_settings"]}, indent=1))


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
    out: str | os.PathLike, variant: str | None = None, device: str = "cpu",
    model_options: dict | None = None, view_options: dict | None = None,
) -> dict[str, Any]:
    """Evaluate per-subject checkpoints under LOSO: each held-out subject by its own file."""
    import torch

    from mefeat.models import create_model, get_spec
    from mefeat.train.checkpoints import load_official_state_dict
    from mefeat.train.metrics import metrics_table

    spec = get_spec(model)
    variant = FeatureStore.open(store).pick_variant(variant)
    data = load_view(store, variant=variant, view=spec.view, options=view_options)
    num_classes = data.num_classes
    folder = Path(checkpoints)
    index, preds = [], []
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
        index += idx.tolist()
        preds += logits.argmax(1).cpu().tolist()
    rows = _prediction_rows(data, {"index": index, "prediction": preds,
                                   "epoch": [-1] * len(index)}, 0)
    table = metrics_table(rows, num_classes)
    meta = {"model": model, "variant": variant, "store": str(store),
            "selection": "checkpoints", "selection_note": f"given checkpoints from {folder}",
            "official_format": data.official_format, "view_options": data.options}
    return write_reports(Path(out), data.classes, len(data), rows, [table], meta)
