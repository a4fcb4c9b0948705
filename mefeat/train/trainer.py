"""LOSO training of a registered model by its recipe: a :class:`~mefeat.train.plan.TrainPlan`
run fold by fold, each fold's result streamed to the run folder as it ends.

The protocol of the baselines' official scripts: one fresh model per left-out subject,
trained by the model's recipe on every other subject, its predictions on the left-out subject
pooled over folds and scored with :mod:`mefeat.metrics`. Which epoch's predictions count is a
named policy (:mod:`mefeat.recipes.selection`), applied when the run is scored: every fold
keeps the held-out predictions of every epoch.

Where the work goes: :mod:`~mefeat.train.fold` trains one fold (the plain loop),
:mod:`~mefeat.train.batched` K folds as one vmapped model (accelerators); here: the jobs
(groups of folds) and where they run (this process, a process pool, Ray), what each job
writes into the run folder (:mod:`~mefeat.train.run_folder`), and the results.

Memory: a fold's checkpoint is written when the fold ends and only its result (predictions,
history) comes back, so a worker holds at most one fold's extra weights (the selected
epoch's copy) whatever the number of folds.

Reproducibility: fold ``s`` of a run with seed ``seed`` draws its streams from
``fold_seed(seed, s)``, so the same seed on the same machine gives bit-identical
predictions, in any order of folds and after any resume; without dropout, batched and
one-at-a-time training agree to rounding.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mefeat.datasets.loso import loso_folds
from mefeat.executors import run_jobs
from mefeat.faults import fault
from mefeat.recipes.loss import Precision
from mefeat.recipes.selection import LAST
from mefeat.train import batched, fold
from mefeat.train.checkpoints import save_state
from mefeat.train.context import Builder, DeviceJitter, FoldContext, FoldOutput
from mefeat.train.data import StoreView
from mefeat.train.plan import TrainPlan
from mefeat.train.result import FoldResult, LosoResult
from mefeat.train.run_folder import RunFolder, RunRecord
from mefeat.views.data import ViewData

Progress = Callable[[dict[str, Any]], None]


def train_loso(model: str, data: ViewData | Any, labels=None, subjects=None, *,
               out: str | Path | None = None, overwrite: bool = False,
               progress: Progress | None = None, **settings: Any) -> LosoResult:
    """Train ``model`` under leave-one-subject-out by its recipe; one run.

    Args:
        model: a registered model (``mefeat.models.list_models()``).
        data: a :class:`~mefeat.views.data.ViewData` (``mefeat.load_view(store, model)``),
            or the model's input array(s) (N, ...) with ``labels`` (N,) and ``subjects``
            (N,), the dataset before a ``/`` (``"casme2/sub01"``).
        out: a run folder: each fold's result and checkpoint is written there as it ends;
            the same call again resumes (a folder of another run is refused).
        progress: called with events (``fold_start``, ``epoch``, ``fold_done``).
        settings: :meth:`TrainPlan.create`'s: ``epochs``, ``lr``, ``batch_size``,
            ``shuffle``, ``precision`` (recipe overrides), ``recipe``, ``selection``,
            ``seed``, ``folds``, ``device``, ``workers``, ``fold_batch``, ``dtype``,
            ``model_options``, ``num_classes``, ``features``, ``checkpoints``...

    Returns:
        the run's :class:`~mefeat.train.result.LosoResult` (its ``metrics()`` are UF1 /
        UAR / accuracy overall and per dataset).
    """
    if not isinstance(data, ViewData):
        data = ViewData.from_arrays(data, labels, subjects)
    elif labels is not None or subjects is not None:
        raise TypeError("labels and subjects come with the data (ViewData); give arrays to "
                        "give them separately")
    plan = TrainPlan.create(model, data, **settings)
    return run_plan(plan, data, out=out, overwrite=overwrite, progress=progress)[0]


def run_plan(plan: TrainPlan, data: ViewData | StoreView, *, out: str | Path | None = None,
             overwrite: bool = False, progress: Progress | None = None,
             record: RunRecord | None = None) -> list[LosoResult]:
    """Train every fold of every run of ``plan`` not yet in ``out``; one result per run.

    ``data`` may be a :class:`StoreView`: every process that trains then reads it from the
    store itself. ``record``: the run record to begin ``out`` with (default: made here).
    """
    t0 = time.perf_counter()
    view = data.load() if isinstance(data, StoreView) else data
    folder = None
    if out is not None:
        folder = RunFolder(out)
        folder.begin(record or make_record(plan, view), overwrite=overwrite)
    every = sorted(set(map(str, view.subjects)))
    wanted = list(plan.subjects or every)
    todo = {r: [s for s in wanted if folder is None or s not in folder.done(r)]
            for r in range(plan.runs)}
    k_max, note = _fold_batching(plan, view, todo)
    chunks = [(r, chunk) for r in range(plan.runs) for chunk in _chunks(plan, view, todo[r],
                                                                          k_max)]
    workers = _workers(plan, len(chunks))
    executor = "ray" if plan.executor == "ray" else ("process" if workers > 1 else "local")
    if executor != "local":
        note += f"; {workers} worker processes" if executor == "process" else \
            f"; Ray ({plan.address or 'local'}), {workers} CPUs"
    jobs = [(plan, data, r, chunk, k_max, note, out) for r, chunk in chunks]
    if progress is not None:
        progress({"event": "start", "total": plan.runs * len(wanted),
                  "done": sum(len(wanted) - len(todo[r]) for r in range(plan.runs)),
                  "epochs": plan.recipe.epochs})
    results: dict[int, list[FoldResult]] = {r: [] for r in range(plan.runs)}
    for _, fold_results in run_jobs(
            _job, [(*j, progress if executor == "local" else None) for j in jobs],
            executor=executor, workers=workers, address=plan.address,
            gpus_per_job=plan.gpus_per_job):
        for res in fold_results:
            results[res.run].append(res)
            if progress is not None:
                progress({"event": "fold_done", "run": res.run, "subject": res.subject,
                          "seconds": res.seconds})
    if folder is not None and plan.checkpoints == "selected":
        finalize_checkpoints(plan, data, folder, wanted)
    settings = {"recipe": plan.recipe.to_dict(), "overrides": plan.overrides,
                "device": plan.device, "dtype": plan.dtype, "fold_batching": note,
                "precision_run": Precision(plan.recipe.precision, torch.device(plan.device))
                .precision, "folds": wanted, "workers": workers, "executor": plan.executor,
                "torch_threads": torch.get_num_threads(), "model_options": plan.model_options}
    wall = time.perf_counter() - t0
    out_results = []
    for r in range(plan.runs):
        folds = folder.folds(r, every) if folder is not None else results[r]
        out_results.append(LosoResult(
            model=plan.model, selection=plan.selection, recipe=plan.recipe,
            num_classes=plan.num_classes, folds=sorted(folds, key=lambda f: f.subject),
            settings={**settings, "seed": plan.seed + r}, n_samples=len(view.labels),
            subjects=every, wall_seconds=wall))
    return out_results


def make_record(plan: TrainPlan, data: ViewData, **extra: Any) -> RunRecord:
    """The run record of ``plan`` on ``data`` (``extra``: how the store's variant was made
    and the environment, which the run layer knows)."""
    from mefeat.models import get_spec

    spec = get_spec(plan.model)
    deviations = [f"{plan.model} deviates from its official training: {d}"
                  for d in spec.deviations]
    return RunRecord(
        model=plan.model, view=spec.view.name, recipe=plan.recipe.to_dict(),
        selection=plan.selection, seed=plan.seed, runs=plan.runs,
        subjects=sorted(set(map(str, data.subjects))), n_samples=len(data.labels),
        num_classes=plan.num_classes, classes=list(data.classes),
        model_options=dict(plan.model_options), view_options=dict(data.options or {}),
        overrides=dict(plan.overrides), data=dict(data.source),
        official_format=data.official_format, checkpoints=plan.checkpoints,
        checkpoint_dtype=plan.checkpoint_dtype, warnings=[*data.warnings, *deviations],
        **extra)


# -- jobs ---------------------------------------------------------------------------------


def _job(plan: TrainPlan, data, run: int, subjects: list[str], k_max: int, note: str,
         out, progress: Progress | None, stop_after: int | None = None) -> list[FoldResult]:
    """Train one group of folds of run ``run`` (in whatever process runs the job) and write
    each fold's checkpoint and result into ``out``; the results come back without weights."""
    view = data.load() if isinstance(data, StoreView) else data
    ctx = _context(plan, view, run, stop_after, weights=out is not None and run == 0)
    all_folds = {f[0]: f for f in loso_folds(view.subjects)}
    chunk = [all_folds[s] for s in subjects]
    t0 = time.perf_counter()

    def on_epoch(epoch: int) -> None:
        if progress is not None:
            progress({"event": "epoch", "run": run, "subjects": subjects, "epoch": epoch,
                      "epochs": ctx.epochs})

    if progress is not None:
        progress({"event": "fold_start", "run": run, "subjects": subjects})
    if len(chunk) == 1 and k_max == 1:
        outputs = fold.train_fold(ctx, chunk[0], on_epoch)
    else:
        outputs = batched.train_group(ctx, chunk, on_epoch)
    if ctx.dev.type == "cuda":
        torch.cuda.synchronize(ctx.dev)
    seconds = (time.perf_counter() - t0) / len(chunk)
    folder = RunFolder(out) if out is not None else None
    results = []
    for (_, _, test), o in zip(chunk, outputs, strict=True):
        res = _fold_result(plan, view, run, test, o, seconds, note)
        if folder is not None:
            if o.state is not None and run == 0:
                res.checkpoint = _write_checkpoint(plan, view, folder, res, o)
                fault("train:checkpoint:written")
            folder.write_fold(res)
            fault("train:fold:written")
        results.append(res)
    return results


def _fold_result(plan: TrainPlan, view: ViewData, run: int, test: np.ndarray, o: FoldOutput,
                 seconds: float, note: str) -> FoldResult:
    return FoldResult(
        subject=o.subject, run=run, seed=plan.seed + run,
        keys=[str(view.keys[i]) for i in test], labels=[int(view.labels[i]) for i in test],
        datasets=[str(view.datasets[i]) for i in test], indices=[int(i) for i in test],
        epochs=int(o.preds.shape[0]), epoch_predictions=o.preds.astype(int).tolist(),
        logits=np.asarray(o.logits, np.float64).round(6).tolist(), history=o.history,
        lr_steps=o.lr_steps, seconds=seconds, fold_batching=note,
        features=None if o.features is None else np.asarray(o.features).round(5).tolist(),
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), load_avg=list(os.getloadavg()))


def _write_checkpoint(plan: TrainPlan, view: ViewData, folder: RunFolder, res: FoldResult,
                      o: FoldOutput) -> dict[str, Any]:
    path = folder.checkpoint_file(res.subject)
    provisional = plan.policy_rule().kind == "all-folds" and plan.selection != "last"
    meta = {"model": plan.model, "subject": res.subject, "epoch": o.state_epoch,
            "selection": plan.selection, "num_classes": plan.num_classes,
            "classes": list(view.classes), "seed": res.seed}
    size = save_state(o.state, path, meta, dtype=plan.checkpoint_dtype)
    info = {"epoch": o.state_epoch, "policy": plan.selection, "file": path.name,
            "bytes": size}
    if provisional:
        info["provisional"] = True  # the all-folds rule picks its epoch once all folds end
    return info


_CONTEXT: dict[tuple, tuple[ViewData, FoldContext]] = {}


def _context(plan: TrainPlan, view: ViewData, run: int, stop_after: int | None, *,
             weights: bool = False) -> FoldContext:
    """The fold context of a run, its data resident on the device (kept for the next job of
    the same run in this process); ``weights``: keep each fold's checkpoint weights."""
    from mefeat.models import get_spec

    # The cache holds the view itself: while it does, no other view can take its id().
    key = (id(view), repr(plan), run, stop_after, weights)
    if key in _CONTEXT and _CONTEXT[key][0] is view:
        return _CONTEXT[key][1]
    _CONTEXT.clear()
    dev = torch.device(plan.device)
    spec = get_spec(plan.model)
    # Data resident on the device, once; contiguous NCHW, or channels-last for the models
    # that train faster so on the CPU (a channels-last array in an NCHW model makes
    # PyTorch's CPU batch norm several times slower).
    channels_last = dev.type == "cpu" and spec.channels_last
    fmt = torch.channels_last
    xs = tuple(torch.as_tensor(x).to(device=dev, dtype=plan.torch_dtype).contiguous(
        memory_format=fmt if channels_last and x.ndim == 4 else torch.contiguous_format)
        for x in view.inputs)
    jitter = view.jitter
    ctx = FoldContext(
        name=plan.model, build=Builder(plan.model, plan.num_classes, plan.model_options, dev,
                                       plan.torch_dtype),
        xs=xs, y=torch.as_tensor(view.labels, device=dev), recipe=plan.recipe, dev=dev,
        seed=plan.seed + run, num_classes=plan.num_classes,
        jitter=None if jitter is None else DeviceJitter.on(jitter, dev),
        keep_features=plan.features,
        checkpoint=plan.policy_rule() if weights and plan.checkpoints == "selected" else None,
        channels_last=channels_last, stop_after=stop_after,
        datasets=np.asarray(view.datasets).astype(str))
    _CONTEXT[key] = (view, ctx)
    return ctx


def _workers(plan: TrainPlan, n_jobs: int) -> int:
    if plan.executor == "ray":
        return plan.workers
    return min(plan.workers, max(n_jobs, 1)) if plan.device == "cpu" else 1


def _chunks(plan: TrainPlan, view: ViewData, subjects: list[str], k_max: int
            ) -> list[list[str]]:
    """Groups of folds trained together: folds with the same optimizer steps per epoch (so
    that Adam's bias corrections and the schedule agree), at most ``k_max`` a group."""
    if k_max == 1:
        return [[s] for s in subjects]
    n_train = {f[0]: len(f[1]) for f in loso_folds(view.subjects)}
    groups: dict[int, list[str]] = {}
    for s in subjects:
        groups.setdefault(plan.recipe.steps_per_epoch(n_train[s]), []).append(s)
    return [g[i:i + k_max] for _, g in sorted(groups.items()) for i in range(0, len(g), k_max)]


def _fold_batching(plan: TrainPlan, view: ViewData, todo: dict[int, list[str]]
                   ) -> tuple[int, str]:
    """Folds per batched group, and the note that says which path runs and why. Models are
    built to probe vmap only where batching can run (an accelerator, several folds)."""
    n_folds = max((len(t) for t in todo.values()), default=0)
    if plan.fold_batch == 1:
        return 1, "one fold at a time (fold_batch=1)"
    if plan.executor == "ray":  # the devices are the cluster's: nothing is probed here
        return 1, "one fold a Ray task"
    if plan.features:
        return 1, "one fold at a time: features come from the plain per-fold module"
    blockers = batched.batching_blockers(plan.recipe)
    if blockers:
        return 1, "one fold at a time: " + "; ".join(blockers)
    if plan.fold_batch == "auto" and torch.device(plan.device).type == "cpu":
        # Measured on 2 cores: vmapped convolutions (grouped conv backward) and the larger
        # stacked activations are slower per fold than a plain loop on CPU.
        return 1, "one fold at a time (auto on CPU: a plain loop beats vmap there)"
    if n_folds < 2:
        return 1, "one fold at a time (one fold to train)"
    ctx = _context(plan, view, 0, None)
    folds = [f for f in loso_folds(view.subjects)]
    ok, why = batched.probe(ctx, folds)
    if not ok:
        return 1, f"one fold at a time: vmap failed on this model ({why})"
    if plan.fold_batch == "auto":
        k = batched.auto_fold_batch(ctx, folds)
        return k, f"batched (vmap), up to {k} folds per group (auto)"
    return int(plan.fold_batch), f"batched (vmap), up to {plan.fold_batch} folds per group"


# -- the checkpoints of an all-folds rule --------------------------------------------------


def finalize_checkpoints(plan: TrainPlan, data, folder: RunFolder, wanted: list[str]) -> None:
    """Under an all-folds official rule, the epoch is known only once every fold of run 0
    has ended: then each fold is trained again up to that epoch (same seed, so the same
    weights on a CPU) and its checkpoint replaced; the replay's held-out predictions are
    compared with the recorded ones and the fold's record says whether they agree."""
    rule = plan.policy_rule()
    view = data.load() if isinstance(data, StoreView) else data
    every = sorted(set(map(str, view.subjects)))
    if rule.kind != "all-folds" or folder.done(0) != set(every):
        return
    folds = folder.folds(0, every)
    result = LosoResult(model=plan.model, selection=plan.selection, recipe=plan.recipe,
                        num_classes=plan.num_classes, folds=folds, subjects=every,
                        n_samples=len(view.labels))
    chosen = result.chosen(plan.selection)
    for res in folds:
        epoch = chosen[res.subject]
        if res.checkpoint is None or not res.checkpoint.get("provisional"):
            continue
        if res.checkpoint["epoch"] != epoch:
            out = _replay(plan, view, res.subject, epoch)
            agree = out.preds[-1].tolist() == res.epoch_predictions[
                res.kept_epochs.index(epoch)]
            meta = {"model": plan.model, "subject": res.subject, "epoch": epoch,
                    "selection": plan.selection, "num_classes": plan.num_classes,
                    "classes": list(view.classes), "seed": res.seed}
            size = save_state(out.state, folder.checkpoint_file(res.subject), meta,
                              dtype=plan.checkpoint_dtype)
            res.checkpoint = {**res.checkpoint, "epoch": epoch, "bytes": size,
                              "replayed": True, "reproduces_predictions": agree}
        res.checkpoint.pop("provisional", None)
        folder.write_fold(res)


def _replay(plan: TrainPlan, view: ViewData, subject: str, epoch: int) -> FoldOutput:
    """Fold ``subject`` of run 0 trained again for ``epoch`` epochs, its weights kept."""
    ctx = replace(_context(plan, view, 0, epoch, weights=True), checkpoint=LAST)
    (out,) = fold.train_fold(ctx, next(f for f in loso_folds(view.subjects) if f[0] == subject))
    return out
