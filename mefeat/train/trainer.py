"""LOSO training of a registered model by its recipe, many folds at once.

The protocol of the baselines' official scripts: one fresh model per left-out subject,
trained by the model's :class:`~mefeat.models.recipe.Recipe` on every other subject, its
predictions on the left-out subject pooled over folds and scored with
``mefeat.train.metrics``. Which epoch's predictions count is a named policy
(``mefeat.train.selection``: ``last``, ``test-best``, ``official``); one run keeps the
held-out predictions of every epoch its policies need, so they are reported side by side.

Where the work goes: ``fold`` trains one fold (the plain loop), ``batched`` K folds as one
vmapped model (accelerators), ``recipes`` executes the recipe's parts and ``selection`` the
epoch rules. Here: checks, the folds and their grouping, worker processes, and the result.

Speed. The official loops train one fold at a time, rebuild a DataLoader every epoch, sync
with ``.item()`` every batch and evaluate every epoch. Here all inputs are moved to the
device once and a fold's batches are index gathers into them; nothing syncs inside the
epoch loop; the held-out subject is evaluated only after the epochs a policy keeps. On CPU
``fold_batch="auto"`` trains folds one at a time (measured on 2 cores: vmapped convolutions
and stacked activations are slower there than a plain loop), and ``workers`` trains groups
of folds in spawned processes with one torch thread each. On a GPU, where a small model is
bound by kernel launches, the batched path is the point.

Reproducibility: fold ``s`` of a run with seed ``seed`` draws its streams from
``fold_seed(seed, s)`` (see ``mefeat.train.fold``), so the same seed on the same machine
gives bit-identical predictions; without dropout, batched and one-at-a-time training agree
to rounding.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mefeat.datasets.loso import loso_folds
from mefeat.errors import ModelError
from mefeat.executors import run_jobs
from mefeat.models.recipe import Recipe
from mefeat.train import batched, fold
from mefeat.train import selection as sel
from mefeat.train.context import Builder, DeviceJitter, FoldContext, fold_seed
from mefeat.train.metrics import metrics_table
from mefeat.train.recipes import (
    Precision,
    TrainingError,
    apply_overrides,
    batching_blockers,
    steps_per_epoch,
)

SELECTIONS = sel.SELECTIONS

__all__ = ["SELECTIONS", "LosoResult", "TrainingError", "fold_seed", "train_loso"]


@dataclass
class LosoResult:
    """What a LOSO run produced.

    Attributes:
        model: registry name.
        selection: the policy of ``predictions`` (``last``, ``test-best`` or ``official``).
        epochs: epochs trained per fold.
        seed: the run's seed.
        num_classes: number of classes.
        recipe: the recipe that ran (overrides applied).
        settings: how it ran: ``recipe`` (as a dict), ``overrides``, dtype, device, fold
            batching path and why, folds, threads, workers, model options.
        predictions: one row per test sample of the folds that ran: ``index`` (into the
            inputs), ``subject`` (the fold), ``dataset`` (the part of the subject before
            ``/``), ``label``, ``prediction``, ``epoch`` (1-based, of the prediction).
        logits: (N, width) float32 logits of the last epoch; NaN rows for samples whose
            fold did not run (``width`` >= ``num_classes``: a wider released head).
        kept_epochs: the 1-based epochs of the rows of ``epoch_predictions``.
        epoch_predictions: (len(kept_epochs), N) int16 held-out predictions after each
            kept epoch, -1 for samples whose fold did not run.
        chosen: per policy, the epoch it takes for each fold.
        fold_seconds: wall time per fold (a batched group's time divided by its size).
        lr: per fold, the learning rate of each epoch (its first step).
        wall_seconds: total wall time of ``train_loso``.
        features: the final model's ``forward_features`` of each held-out sample (t-SNE).
        states: each fold's final weights (checkpoints).
    """

    model: str
    selection: str
    epochs: int
    seed: int
    num_classes: int
    recipe: Recipe
    settings: dict[str, Any]
    predictions: Any
    logits: np.ndarray
    kept_epochs: list[int]
    epoch_predictions: np.ndarray
    chosen: dict[str, dict[str, int]]
    fold_seconds: dict[str, float]
    lr: dict[str, list[float]] = field(default_factory=dict)
    lr_steps: dict[str, list[float]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    features: np.ndarray | None = None
    states: dict[str, dict[str, Tensor]] = field(default_factory=dict)

    @property
    def best_epoch(self) -> dict[str, int] | None:
        """The epoch ``selection`` chose per fold (``None`` under ``last``)."""
        return None if self.selection == "last" else dict(self.chosen[self.selection])

    def predictions_for(self, policy: str):
        """The prediction table under another kept policy."""
        if policy not in self.chosen:
            raise TrainingError(f"policy {policy!r} was not kept by this run "
                                f"(kept: {sorted(self.chosen)}); train with selections=")
        return _prediction_table(self._folds, self._labels, self.epoch_predictions,
                                 self.kept_epochs, self.chosen[policy])

    def metrics(self, policy: str | None = None) -> dict[str, Any]:
        """Overall and per-dataset UF1/UAR/accuracy (``metrics_table``), labelled."""
        policy = policy or self.selection
        preds = self.predictions if policy == self.selection else self.predictions_for(policy)
        table = metrics_table(preds, self.num_classes)
        table["selection"] = policy
        table["epochs"] = self.epochs
        return table

    # set by train_loso
    _folds: list = field(default_factory=list, repr=False)
    _labels: np.ndarray | None = field(default=None, repr=False)


def _prediction_table(folds, labels, epoch_preds, kept, chosen):
    import pandas as pd

    n = len(labels)
    pred, epoch = sel.selected_predictions(chosen, epoch_preds, kept,
                                                 [(s, t) for s, _, t in folds], n)
    rows = []
    for subject, _, test_idx in folds:
        dataset = subject.split("/", 1)[0] if "/" in subject else ""
        for i in test_idx:
            rows.append({"index": int(i), "subject": subject, "dataset": dataset,
                         "label": int(labels[i]), "prediction": int(pred[i]),
                         "epoch": int(epoch[i])})
    return pd.DataFrame(rows, columns=["index", "subject", "dataset", "label", "prediction",
                                       "epoch"])


def train_loso(
    model_name: str,
    inputs: Sequence[np.ndarray | Tensor] | np.ndarray | Tensor,
    labels: np.ndarray | Tensor | Sequence[int],
    subjects: Sequence[str] | np.ndarray,
    *,
    epochs: int | None = None,
    selection: str = "last",
    also: Sequence[str] = (),
    seed: int | None = None,
    device: str | torch.device = "cpu",
    lr: float | None = None,
    batch_size: int | str | None = None,
    shuffle: bool | None = None,
    precision: str | None = None,
    recipe: Recipe | None = None,
    jitter: Any = None,
    folds: Sequence[str] | int | None = None,
    fold_batch: int | str = "auto",
    dtype: torch.dtype = torch.float32,
    model_options: Mapping[str, Any] | None = None,
    num_classes: int = 3,
    progress: Callable[[int, int], None] | None = None,
    return_features: bool = False,
    return_states: bool = False,
    workers: int = 1,
) -> LosoResult:
    """Train ``model_name`` under leave-one-subject-out and predict every held-out subject.

    Args:
        model_name: a registered model (``mefeat.models.list_models()``).
        inputs: one array (N, ...) per model input, as the model's view gives them (a
            single array for single-input models).
        labels: (N,) int class ids in ``0..num_classes-1``.
        subjects: (N,) subject of each sample, dataset included (``"casme2/sub01"``).
        epochs, lr, batch_size (an int or ``"full"``), shuffle, precision: overrides of the
            recipe's, recorded as such; ``None`` keeps the recipe's.
        selection: the policy of ``predictions``: ``"last"`` (default), ``"test-best"`` or
            ``"official"`` (see ``mefeat.train.selection``).
        also: further policies to keep (``last`` is always kept).
        seed: run seed; ``None``: the recipe's seed, else 0.
        device: where everything runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).
        recipe: train by this recipe instead of the model's registered one.
        jitter: the key-frame jitter bank (``ViewData.jitter``), required when the recipe
            jitters key frames.
        folds: run only these subjects' folds, or the first ``folds`` folds in sorted order.
        fold_batch: folds trained together as one batched model: an int (1 = one at a
            time, no vmap), or ``"auto"``: one at a time on CPU, on an accelerator as many
            as a memory estimate allows.
        dtype: dtype of the parameters and of the inputs on the device.
        model_options: builder options (ablations), see ``get_spec(name).options``.
        num_classes: number of classes of the label scheme.
        progress: called as ``progress(epochs_done, epochs_total)`` as training advances
            (after every epoch in this process, after every group of folds in workers).
        return_features: also return each test sample's ``forward_features`` of its fold's
            final model (t-SNE); trains one fold at a time.
        return_states: also return each fold's final weights (checkpoints).
        workers: on CPU, train groups of folds in this many spawned processes (one torch
            thread each). Ignored on accelerators.
    """
    from mefeat.models import get_spec

    t_start = time.perf_counter()
    policies = [selection] + [p for p in also if p != selection]
    for p in policies:
        if p not in SELECTIONS:
            raise TrainingError(f"selection must be one of {SELECTIONS}, got {p!r}")
    if "last" not in policies:
        policies.append("last")
    spec = get_spec(model_name)
    options = dict(model_options or {})
    unknown = set(options) - set(spec.options)
    if unknown:
        raise ModelError(
            f"model {model_name!r} has no option(s) {sorted(unknown)}; "
            f"its options are {sorted(spec.options)}"
        )
    base = recipe or spec.recipe
    if base is None:
        raise TrainingError(f"model {model_name!r} was registered without a recipe; register "
                            "it with recipe=... (mefeat.models.Recipe) or pass recipe=")
    r, overrides = apply_overrides(base, epochs=epochs, lr=lr, batch_size=batch_size,
                                   shuffle=shuffle, precision=precision)
    run_seed = seed if seed is not None else (r.seed if r.seed is not None else 0)
    dev = torch.device(device)

    xs_in = (inputs,) if isinstance(inputs, (np.ndarray, Tensor)) else tuple(inputs)
    y_np = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels).astype(np.int64)
    n = int(y_np.shape[0])
    subj = np.asarray([str(v) for v in subjects], dtype=object)
    _check_inputs(xs_in, y_np, subj, spec.input_shapes, num_classes, model_name)
    if r.keyframe_jitter is not None and jitter is None:
        raise TrainingError(
            f"model {model_name!r}: its recipe jitters the key frames in training, which "
            "needs the aligned frames: pass jitter= (load_view(..., jitter=...).jitter), or "
            "train with recipe=spec.recipe.replace(keyframe_jitter=None) to turn it off"
        )
    if jitter is not None and r.keyframe_jitter is None:
        raise TrainingError(f"model {model_name!r}: jitter= given, but its recipe has no "
                            "keyframe_jitter")

    run_folds = _select_folds(loso_folds(subj), folds)
    # Data resident on the device, once; contiguous NCHW, or channels-last for the models
    # that train faster so on the CPU (a channels-last array in an NCHW model makes
    # PyTorch's CPU batch norm several times slower).
    channels_last = dev.type == "cpu" and spec.channels_last
    xs = tuple(torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
               .to(device=dev, dtype=dtype).contiguous(
                   memory_format=torch.channels_last if channels_last and np.ndim(x) == 4
                   else torch.contiguous_format) for x in xs_in)
    y = torch.as_tensor(y_np, device=dev)
    keep = tuple(selection_epochs(policies, r))
    ctx = FoldContext(
        name=model_name, build=Builder(model_name, num_classes, options, dev, dtype), xs=xs,
        y=y, recipe=r, dev=dev, keep=keep, seed=run_seed, num_classes=num_classes,
        jitter=None if jitter is None else DeviceJitter(
            torch.as_tensor(jitter.bank, device=dev), jitter.start, jitter.count,
            jitter.to_inputs),
        keep_features=return_features, keep_states=return_states,
        channels_last=channels_last,
    )
    k_max, batching_note = _fold_batching(ctx, run_folds, fold_batch, return_features)

    # Group folds with the same number of optimizer steps per epoch, so that every fold of
    # a group takes the same steps (Adam's bias corrections and the schedule agree).
    groups: dict[int, list] = {}
    for f in run_folds:
        groups.setdefault(steps_per_epoch(r, len(f[1])), []).append(f)
    chunks = [g[i:i + k_max] for _, g in sorted(groups.items()) for i in range(0, len(g), k_max)]

    if not isinstance(workers, int) or workers < 1:
        raise TrainingError(f"workers must be an int >= 1, got {workers!r}")
    n_workers = min(workers, len(chunks)) if dev.type == "cpu" else 1
    total = len(run_folds) * r.epochs
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    if n_workers > 1:
        batching_note += f"; {n_workers} worker processes"
        results = run_jobs(_train_chunk, [(ctx, c, k_max) for c in chunks],
                           executor="process", workers=n_workers)
    else:
        results = ((i, _train_chunk(ctx, c, k_max, tick)) for i, c in enumerate(chunks))

    epoch_preds = np.full((len(keep), n), -1, dtype=np.int16)
    logits: np.ndarray | None = None
    fold_seconds: dict[str, float] = {}
    lr_of: dict[str, list[float]] = {}
    lr_steps: dict[str, list[float]] = {}
    features: np.ndarray | None = None
    states: dict[str, dict[str, Tensor]] = {}
    for i, (out, seconds) in results:
        chunk = chunks[i]
        for (subject, _, test_idx), fo in zip(chunk, out, strict=True):
            fold_seconds[subject] = seconds / len(chunk)
            epoch_preds[:, test_idx] = fo["preds"]
            if logits is None:
                logits = np.full((n, fo["logits"].shape[1]), np.nan, dtype=np.float32)
            logits[test_idx] = fo["logits"]
            lr_of[subject] = fo["lr"]
            if "lr_steps" in fo:
                lr_steps[subject] = fo["lr_steps"]
            if "features" in fo:
                if features is None:
                    features = np.full((n, fo["features"].shape[1]), np.nan, np.float32)
                features[test_idx] = fo["features"]
            if "state" in fo:
                states[subject] = fo["state"]
        if n_workers > 1:
            done[0] += len(chunk) * r.epochs - 1
            tick()

    test_folds = [(s, t) for s, _, t in run_folds]
    chosen = {p: sel.choose_epochs(sel.rule_of(p, r), epoch_preds, keep,
                                             y_np, test_folds, num_classes, r.epochs)
              for p in policies}
    settings = {
        "recipe": r.as_dict(),
        "overrides": overrides,
        "selection_rules": {p: sel.note(p, r) for p in policies},
        "dtype": str(dtype).replace("torch.", ""),
        "device": str(dev),
        "model_options": options,
        "fold_batching": batching_note,
        "folds": [f[0] for f in run_folds],
        "torch_threads": torch.get_num_threads(),
        "workers": n_workers,
        "seed": run_seed,
        "memory_format": "channels_last" if channels_last else "contiguous",
        "precision_run": Precision(r.precision, dev).precision,
    }
    result = LosoResult(
        model=model_name, selection=selection, epochs=r.epochs, seed=run_seed,
        num_classes=num_classes, recipe=r, settings=settings,
        predictions=_prediction_table(run_folds, y_np, epoch_preds, keep, chosen[selection]),
        logits=logits, kept_epochs=list(keep), epoch_predictions=epoch_preds, chosen=chosen,
        fold_seconds=fold_seconds, lr=lr_of, lr_steps=lr_steps,
        wall_seconds=time.perf_counter() - t_start, features=features, states=states,
    )
    result._folds, result._labels = run_folds, y_np
    return result


def selection_epochs(policies: Sequence[str], recipe: Recipe) -> list[int]:
    """The epochs whose held-out predictions a run with these policies keeps."""
    return sel.epochs_to_keep(policies, recipe, recipe.epochs)


def _select_folds(all_folds, folds):
    if folds is None:
        run = all_folds
    elif isinstance(folds, int):
        run = all_folds[: max(0, folds)]
    else:
        wanted = {str(f) for f in folds}
        missing = wanted - {f[0] for f in all_folds}
        if missing:
            raise TrainingError(f"folds {sorted(missing)} are not subjects of the data")
        run = [f for f in all_folds if f[0] in wanted]
    if not run:
        raise TrainingError("no fold to run (folds= selected none)")
    return run


def _fold_batching(ctx: FoldContext, run_folds, fold_batch, features: bool) -> tuple[int, str]:
    """Folds per batched group, and the note that says which path runs and why."""
    if not (fold_batch == "auto" or (isinstance(fold_batch, int) and fold_batch >= 1)):
        raise TrainingError(f"fold_batch must be 'auto' or an int >= 1, got {fold_batch!r}")
    if fold_batch == 1:
        return 1, "one fold at a time (fold_batch=1)"
    if features:
        return 1, "one fold at a time: features come from the plain per-fold module"
    blockers = batching_blockers(ctx.recipe)
    if blockers:
        return 1, "one fold at a time: " + "; ".join(blockers)
    if fold_batch == "auto" and ctx.dev.type == "cpu":
        # Measured on 2 cores: vmapped convolutions (grouped conv backward) and the larger
        # stacked activations are slower per fold than a plain loop on CPU.
        return 1, "one fold at a time (auto on CPU: a plain loop beats vmap there)"
    ok, why = batched.probe(ctx, run_folds)
    if not ok:
        return 1, f"one fold at a time: vmap failed on this model ({why})"
    if fold_batch == "auto":
        k = batched.auto_fold_batch(ctx, run_folds)
        return k, f"batched (vmap), up to {k} folds per group (auto)"
    return int(fold_batch), f"batched (vmap), up to {fold_batch} folds per group"


def _train_chunk(ctx: FoldContext, chunk, k_max: int, on_epoch=None):
    """Train one group of folds; returns its per-fold results and the wall seconds."""
    t0 = time.perf_counter()
    if len(chunk) == 1 and k_max == 1:
        out = fold.train_fold(ctx, chunk[0], on_epoch)
    else:
        out = batched.train_group(ctx, chunk, on_epoch)
    if ctx.dev.type == "cuda":
        torch.cuda.synchronize(ctx.dev)
    return out, time.perf_counter() - t0


def _check_inputs(xs, y, subj, shapes, num_classes, name) -> None:
    n = y.shape[0]
    if y.ndim != 1:
        raise TrainingError(f"labels must have shape (N,), got {y.shape}")
    if len(subj) != n:
        raise TrainingError(f"{len(subj)} subjects for {n} labels")
    if len(xs) != len(shapes):
        raise TrainingError(
            f"model {name!r} takes {len(shapes)} input(s) of shapes {shapes}, got {len(xs)}"
        )
    for i, (x, shape) in enumerate(zip(xs, shapes, strict=True)):
        if x.shape[0] != n:
            raise TrainingError(f"input {i} has {x.shape[0]} samples, labels have {n}")
        if tuple(x.shape[1:]) != tuple(shape):
            raise TrainingError(
                f"input {i} has sample shape {tuple(x.shape[1:])}; model {name!r} expects "
                f"{tuple(shape)} (see its view)"
            )
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise TrainingError(f"labels must lie in 0..{num_classes - 1}, got {y.min()}..{y.max()}")
