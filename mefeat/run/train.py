"""``train`` and ``evaluate``: a registered model under LOSO on a store variant.

``train`` builds one :class:`~mefeat.train.TrainPlan` from its settings, trains it into the
run folder ``out`` (each fold's result and checkpoint written as the fold ends; the same
command again resumes, another run's folder is refused) and writes the reports of whatever
folds are there (:mod:`mefeat.report.train`). ``evaluate`` scores per-subject checkpoints:
a run folder's (``--run``), or a folder of official weights named after the subjects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mefeat.errors import MefeatError, ModelError
from mefeat.provenance import environment
from mefeat.report.train import require_tensorboard, write_reports
from mefeat.store import FeatureStore
from mefeat.train import LosoResult, RunFolder, StoreView, TrainPlan, make_record, run_plan
from mefeat.train.checkpoints import load_fold_model
from mefeat.train.plan import check_device
from mefeat.views.data import ViewData


def run_training(model: str, store: str | os.PathLike, *, out: str | os.PathLike,
                 variant: str | None = None, view_options: dict | None = None,
                 overwrite: bool = False, tensorboard: bool = False, progress: bool = False,
                 **settings: Any) -> dict[str, Any]:
    """Train ``model`` on a store variant into the run folder ``out``; its metrics.

    ``settings`` are :meth:`TrainPlan.create`'s (``epochs``, ``lr``, ``batch_size``,
    ``precision``, ``runs``, ``seed``, ``selection``, ``device``, ``folds``, ``workers``,
    ``executor``, ``address``, ``gpus_per_job``, ``checkpoints``, ``checkpoint_dtype``,
    ``model_options``...). ``progress``: a bar of folds with the current fold's epoch.
    """
    if tensorboard:
        require_tensorboard()  # refused before anything trains
    if settings.get("selection") == "official" and variant is None and not view_options:
        variant, view_options = official_inputs(model, store)
    source = StoreView(str(store), model, variant, _view_options(model, view_options))
    data = source.load()
    plan = TrainPlan.create(model, data, **settings)
    record = make_record(plan, data, store_settings=_made_with(store, data.variant),
                         environment=environment())
    bar = FoldBar(model) if progress else None
    try:
        results = run_plan(plan, source, out=out, overwrite=overwrite, record=record,
                           progress=bar)
    finally:
        if bar is not None:
            bar.close()
    return write_reports(Path(out), RunFolder(out).record(), results, tensorboard=tensorboard)


def official_inputs(model: str, store) -> tuple[str | None, dict]:
    """The variant and view options of ``model``'s official inputs (its
    :class:`~mefeat.views.InputProfile`), or refuse a store without them, saying how to make
    them; a model without a profile trains on the store's default variant and view."""
    from mefeat.models import get_spec

    profile = get_spec(model).official_inputs
    if profile is None:
        return None, {}
    fs = FeatureStore.open(store)
    names = profile.variants(fs.config.get("align", {}).get("size"))
    present = [n for n in names if n in fs.variants()]
    if present:
        return present[0], dict(profile.view_options)
    make = (f"make them with `{profile.extract_command(str(store))}`" if "align" in fs.config
            else "they are made from aligned frames, which this store of imported features "
            "does not hold")
    example = fs.variants()[0] if fs.variants() else "gt"
    raise MefeatError(
        f"{model} under --selection official trains on its official inputs ({profile.source}):"
        f" {store} has no variant {names[0]}; {make}, or give --variant (and --view-option) to "
        f"train on other inputs (e.g. --variant {example})")


def _view_options(model: str, given: dict | None) -> tuple[tuple[str, str], ...]:
    """The model's view options with ``given`` applied (an unknown one refused), as a key."""
    from mefeat.models import get_spec

    return tuple(sorted(get_spec(model).view.resolve_options(given).items()))


def _made_with(store, variant: str) -> dict[str, Any]:
    fs = FeatureStore.open(store)
    var = fs.variant(variant)
    return {"variant_settings": var.attrs.get("settings", {}),
            "variant_size": var.attrs.get("size"), "align": fs.config.get("align"),
            "dataset": fs.config.get("dataset")}


class FoldBar:
    """A tqdm bar of the run's folds (all runs): folds done of the total, the current
    fold's epoch, an ETA; a resumed run starts at the folds already done."""

    def __init__(self, model: str) -> None:
        self.model, self.bar, self.done = model, None, 0

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "start":  # the bar appears once the run folder took the run
            from tqdm import tqdm

            self.done = event["done"]
            self.bar = tqdm(desc=f"train {self.model}", unit="fold", total=event["total"],
                            initial=self.done, bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} "
                            "folds [{elapsed}<{remaining}{postfix}]")
        elif kind == "epoch":
            self.bar.n = self.done + event["epoch"] / event["epochs"] * len(event["subjects"])
            self.bar.set_postfix_str(f"run {event['run']}, {'+'.join(event['subjects'])}: "
                                     f"epoch {event['epoch']}/{event['epochs']}", refresh=False)
            self.bar.refresh()
        elif kind == "fold_done":
            self.done += 1
            self.bar.n = self.done
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_score(run: str | os.PathLike, *, selection: str | None = None,
              out: str | os.PathLike | None = None) -> dict[str, Any]:
    """Score a run folder's folds present by the rule the run recorded, or explicitly by
    another policy (``selection``, said so in the report), into ``out`` (default: the run
    folder itself)."""
    from mefeat.recipes.selection import check_policy
    from mefeat.train import folder_results

    folder = RunFolder(run)
    record = folder.record()
    if selection is not None:
        check_policy(selection)
    results = folder_results(folder, selection=selection)
    meta = {}
    if selection is not None and selection != record.selection:
        meta["rescored_from"] = record.selection
    return write_reports(Path(out or run), record, results, meta=meta, selection=selection)


# -- evaluate -----------------------------------------------------------------------------


def _find_checkpoint(folder: Path, subject: str) -> Path | None:
    dataset, _, sub = subject.partition("/")
    for stem in (sub, f"{dataset}_{sub}", subject.replace("/", "_")):
        for ext in (".safetensors", ".pth", ".pt"):
            if (folder / f"{stem}{ext}").is_file():
                return folder / f"{stem}{ext}"
    return None


def run_evaluation(store: str | os.PathLike, *, out: str | os.PathLike,
                   run: str | os.PathLike | None = None, model: str | None = None,
                   checkpoints: str | os.PathLike | None = None, variant: str | None = None,
                   device: str = "cpu", model_options: dict | None = None,
                   view_options: dict | None = None) -> dict[str, Any]:
    """Score per-subject checkpoints under LOSO, each held-out subject by its own file.

    ``run``: a run folder of ``mefeat train`` (its model, options, view and checkpoints);
    else ``model`` and ``checkpoints`` (a folder with one file per subject, ``sub01.pth``,
    ``casme2_sub01.safetensors``...). The folds whose checkpoint is missing are named and
    left out.
    """
    check_device(device)
    if run is not None:
        record = RunFolder(run).record()
        if record.checkpoints == "none":
            raise ModelError(f"{run}: the run kept no checkpoints (--checkpoints none)")
        model, folder = record.model, Path(run) / "checkpoints"
        model_options, view_options = record.model_options, record.view_options
        variant = variant if variant is not None else record.data.get("variant")
    elif model is None or checkpoints is None:
        raise ModelError("evaluate needs --run RUN, or --model and --checkpoints")
    else:
        folder = Path(checkpoints)
    data = StoreView(str(store), model, variant, _view_options(model, view_options)).load()
    found = {s: _find_checkpoint(folder, s) for s in sorted(set(data.subjects))}
    missing = sorted(s for s, p in found.items() if p is None)
    if len(missing) == len(found):
        raise ModelError(f"{folder}: no checkpoint for any held-out subject (looked for "
                         "sub01.pth, sub01.safetensors, casme2_sub01.*); name each file after "
                         "its subject")
    folds = [_evaluate_fold(data, s, p, model, model_options, device)
             for s, p in found.items() if p is not None]
    plan_record = _evaluation_record(data, model, model_options, folder)
    result = LosoResult(model=model, selection="last", recipe=_recipe(model),
                        num_classes=data.num_classes, folds=folds,
                        subjects=sorted(set(map(str, data.subjects))),
                        n_samples=len(data.labels),
                        settings={"checkpoints": str(folder), "device": device})
    meta = {"selection": "checkpoints", "selection_note": f"given checkpoints from {folder}"}
    return write_reports(Path(out), plan_record, [result], meta=meta)


def _evaluate_fold(data: ViewData, subject: str, path: Path, model: str, options, device):
    import torch

    from mefeat.train import FoldResult

    net = load_fold_model(path, model, num_classes=data.num_classes, options=options,
                          device=device, what="this evaluation")
    idx = np.flatnonzero(data.subjects == subject)
    with torch.no_grad():
        xs = tuple(torch.from_numpy(x[idx]).to(device) for x in data.inputs)
        logits = net(xs[0] if len(xs) == 1 else xs).float().cpu().numpy()
    return FoldResult(subject=subject, run=0, seed=0, keys=[str(data.keys[i]) for i in idx],
                      labels=[int(data.labels[i]) for i in idx],
                      datasets=[str(data.datasets[i]) for i in idx], epochs=1,
                      epoch_predictions=[logits.argmax(1).tolist()], logits=logits.tolist(),
                      history={"train_loss": [np.nan], "test_loss": [np.nan],
                               "test_acc": [float((logits.argmax(1) == data.labels[idx])
                                                  .mean())], "lr": [np.nan]},
                      indices=idx.tolist())


def _recipe(model: str):
    from mefeat.models import get_spec

    recipe = get_spec(model).recipe
    if recipe is None:  # scoring needs only the selection rules; 'last' is used
        from mefeat.recipes import Optimizer, Recipe, Selection

        recipe = Recipe(Optimizer("adam", 1e-3), 1, None,
                        Selection("last", source="evaluation of given checkpoints"))
    return recipe.replace(epochs=1)


def _evaluation_record(data: ViewData, model: str, options, folder: Path):
    from mefeat.models import get_spec
    from mefeat.train import RunRecord

    return RunRecord(model=model, view=get_spec(model).view.name,
                     recipe=_recipe(model).to_dict(), selection="last", seed=0,
                     subjects=sorted(set(map(str, data.subjects))), n_samples=len(data.labels),
                     num_classes=data.num_classes, classes=list(data.classes),
                     model_options=dict(options or {}), view_options=dict(data.options),
                     data=dict(data.source), official_format=data.official_format,
                     warnings=list(data.warnings), environment=environment())
