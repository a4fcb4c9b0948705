"""LOSO training of a registered model, many folds at once.

The protocol is the one of the baselines' official scripts (STSTNet:
github.com/christy1206/STSTNet ``main.py``; HTNet: github.com/wangzhifengharrison/HTNet
``main_HTNet.py``): one fresh model per left-out subject, trained with the paper's optimiser
settings on every other subject, its predictions on the left-out subject pooled over folds
and scored with ``mefeat.train.metrics``.

Epoch selection (always recorded in the result):

- ``"last"`` (the honest default): train a fixed number of epochs and predict with the
  last one. STSTNet's official script does this.
- ``"test-best"``: the official HTNet practice: evaluate the held-out subject after every
  epoch and keep the predictions of the epoch with the best accuracy *on that subject*
  (ties go to the later epoch, as ``main_HTNet.py`` compares with ``<=``). It selects on the
  test set, so its scores are optimistic; it exists to reproduce published numbers.

Speed. The official loops train one fold at a time, rebuild a DataLoader every epoch, sync
with ``.item()`` every batch and evaluate every epoch. Here:

- all inputs are moved to the device once; a fold's batches are index gathers into them;
- K folds train as one batched model: the K models' parameters are stacked
  (``torch.func.stack_module_state``) and the model runs under ``torch.vmap`` over
  ``torch.func.functional_call``. The loss is the *sum over folds of each fold's mean loss*,
  so each fold's gradient is exactly its own; the optimiser is ``torch.optim.Adam``/``SGD``
  on the stacked tensors, whose update is element-wise, hence per fold independent and
  numerically the same maths as K separate optimisers (same step counts, because only folds
  with the same number of steps per epoch are batched together);
- folds have training sets of different sizes: batches are padded and a mask weights each
  fold's loss (mean over its own samples). BatchNorm is the one common layer that mixes the
  samples of a batch, so in the batched model every ``BatchNorm1d/2d/3d`` is replaced by a
  masked batch norm (same parameter and buffer names, statistics over the real samples
  only, running statistics per fold, same momentum and unbiased running variance as
  PyTorch's);
- nothing syncs inside the epoch loop (no ``.item()``); predictions stay on the device and
  come back once per group of folds.

On CPU the batched path is correct but not faster (measured on 2 cores with STSTNet:
the work is memory-bound element-wise kernels whose traffic batching does not reduce, and
PyTorch's grouped-convolution backward, which vmap uses for per-fold convolutions, is far
slower on CPU than K plain ones), so ``fold_batch="auto"`` trains folds one at a time there;
the one-at-a-time path still keeps the data resident, gathers fixed batches once when the
spec does not shuffle, evaluates only when the selection policy needs it and never syncs
inside the epoch loop. On a GPU, where a small model is bound by kernel launches, the
batched path is the point. What does pay on CPU is ``workers``: groups of folds train in
spawned processes with one torch thread each (``mefeat train`` uses every core by
default), instead of one process whose intra-op threads split kernels too small to share.

Layers: per-sample layers (conv, linear, pooling, attention, LayerNorm/GroupNorm, dropout
with per-fold masks via ``randomness="different"``) and BatchNorm (masked) run batched. A
model that ``vmap`` cannot run (data-dependent Python control flow, ``.item()``, in-place
writes into its inputs...) is detected by a one-step probe and trained one fold at a time
instead (``LosoResult.settings["fold_batching"]`` says which path ran and why).

Reproducibility: fold ``s`` of a run with seed ``seed`` is initialised with
``torch.manual_seed(crc32(f"{seed}/{s}"))`` followed by the model's own builder (so the
initialisation scheme is the model's), and shuffles with its own generator; the same seed
on the same machine gives bit-identical predictions. Dropout masks come from one stream
per group of folds, so a model with dropout gives other (equally distributed) numbers when
folds are grouped differently; without dropout, batched and one-at-a-time training agree to
rounding.
"""

from __future__ import annotations

import copy
import math
import os
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mefeat.errors import MefeatError, ModelError
from mefeat.train.loso import loso_folds
from mefeat.train.metrics import metrics_table

SELECTIONS = ("last", "test-best")


class TrainingError(MefeatError):
    """Bad training inputs or options (shapes, labels, selection policy...)."""


@dataclass
class LosoResult:
    """What a LOSO run produced.

    Attributes:
        model: registry name.
        selection: epoch-selection policy (``"last"`` or ``"test-best"``).
        epochs: epochs trained per fold.
        seed: the run's seed.
        num_classes: number of classes.
        settings: the resolved training settings (optimizer, lr, batch size, weight decay,
            loss, shuffle, dtype, amp, device, fold batching path).
        predictions: one row per test sample of the folds that ran: ``index`` (into the
            inputs), ``subject`` (the fold), ``dataset`` (the part of the subject before
            ``/``), ``label``, ``prediction``, ``epoch`` (the epoch whose prediction it is,
            1-based).
        logits: (N, C) float32 logits of the selected epoch; NaN rows for samples whose
            fold did not run.
        fold_seconds: wall time per fold; for batched folds it is the group's time divided
            by the group's size (amortised).
        best_epoch: for ``test-best``, the chosen epoch per fold (1-based).
        epoch_predictions: for ``test-best``, (epochs, N) int16 predictions after every
            epoch, -1 for samples whose fold did not run.
        wall_seconds: total wall time of ``train_loso``.
    """

    model: str
    selection: str
    epochs: int
    seed: int
    num_classes: int
    settings: dict[str, Any]
    predictions: Any
    logits: np.ndarray
    fold_seconds: dict[str, float]
    best_epoch: dict[str, int] | None = None
    epoch_predictions: np.ndarray | None = None
    wall_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    features: np.ndarray | None = None
    states: dict[str, dict[str, Tensor]] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """Overall and per-dataset UF1/UAR/accuracy (``metrics_table``), labelled."""
        table = metrics_table(self.predictions, self.num_classes)
        table["selection"] = self.selection
        table["epochs"] = self.epochs
        return table


# ---------------------------------------------------------------------------------------
# Masked batch norm for the batched path.

_MASK = threading.local()


class _MaskedBatchNorm(nn.Module):
    """BatchNorm whose batch statistics ignore padded samples.

    Same parameter/buffer names as ``nn.BatchNorm*d`` so that ``functional_call`` feeds it
    the stacked state of the original modules. The sample mask of the current (per-fold)
    batch is read from ``_MASK.value``, set by the batched forward.
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.eps = bn.eps
        self.momentum = bn.momentum
        self.affine = bn.affine
        self.track_running_stats = bn.track_running_stats
        if bn.affine:
            self.weight = nn.Parameter(bn.weight.detach().clone())
            self.bias = nn.Parameter(bn.bias.detach().clone())
        if bn.track_running_stats:
            self.register_buffer("running_mean", bn.running_mean.detach().clone())
            self.register_buffer("running_var", bn.running_var.detach().clone())
            self.register_buffer("num_batches_tracked", bn.num_batches_tracked.detach().clone())
        self.training = bn.training

    def forward(self, x: Tensor) -> Tensor:
        shape = [1, -1] + [1] * (x.dim() - 2)
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats:
            mask = getattr(_MASK, "value", None)
            dims = [0, *range(2, x.dim())]
            per_sample = math.prod(x.shape[2:])
            if mask is None:
                count = x.shape[0] * per_sample
                mean = x.mean(dims)
                diff = x - mean.view(shape)
                var = (diff * diff).mean(dims)
            else:
                m = mask.to(x.dtype).view([-1] + [1] * (x.dim() - 1))
                count = mask.to(x.dtype).sum() * per_sample
                mean = (x * m).sum(dims) / count
                diff = x - mean.view(shape)
                var = (diff * diff * m).sum(dims) / count
            if self.training and self.track_running_stats:
                with torch.no_grad():
                    self.num_batches_tracked.add_(1)
                    if self.momentum is None:  # cumulative moving average, as PyTorch
                        mom = 1.0 / self.num_batches_tracked.to(mean.dtype)
                    else:
                        mom = self.momentum
                    unbiased = var.detach() * (count / (count - 1))
                    self.running_mean.mul_(1 - mom).add_(mom * mean.detach())
                    self.running_var.mul_(1 - mom).add_(mom * unbiased)
            y = diff * torch.rsqrt(var + self.eps).view(shape)
        else:
            y = (x - self.running_mean.view(shape)) * torch.rsqrt(self.running_var + self.eps).view(
                shape
            )
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def _mask_batchnorms(module: nn.Module) -> nn.Module:
    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
            child, nn.SyncBatchNorm
        ):
            setattr(module, name, _MaskedBatchNorm(child))
        else:
            _mask_batchnorms(child)
    return module


# ---------------------------------------------------------------------------------------
# Settings.


@dataclass
class _Settings:
    optimizer: str
    lr: float
    weight_decay: float
    batch_size: int | None  # None = full batch
    epochs: int
    loss: str
    label_smoothing: float
    shuffle: bool
    betas: tuple[float, float]
    eps: float
    momentum: float
    nesterov: bool


def _resolve_settings(
    train: Mapping[str, Any],
    *,
    epochs: int | None,
    lr: float | None,
    batch_size: int | str | None,
    shuffle: bool | None,
    name: str,
) -> _Settings:
    optimizer = str(train.get("optimizer", "adam")).lower()
    if optimizer not in ("adam", "adamw", "sgd"):
        raise ModelError(f"model {name!r}: optimizer {optimizer!r} is not supported by the trainer")
    loss = str(train.get("loss", "cross_entropy")).lower()
    if loss != "cross_entropy":
        raise ModelError(f"model {name!r}: loss {loss!r} is not supported by the trainer")
    if batch_size is None:
        bs = train.get("batch_size")
    elif batch_size == "full":
        bs = None
    else:
        bs = int(batch_size)
        if bs < 1:
            raise TrainingError(f"batch_size must be >= 1 or 'full', got {batch_size!r}")
    n_epochs = int(epochs if epochs is not None else train.get("epochs", 0))
    if n_epochs < 1:
        raise TrainingError(f"epochs must be >= 1 (model {name!r} spec gives none); pass epochs=")
    if "lr" not in train and lr is None:
        raise TrainingError(f"model {name!r} spec has no learning rate; pass lr=")
    return _Settings(
        optimizer=optimizer,
        lr=float(lr if lr is not None else train["lr"]),
        weight_decay=float(train.get("weight_decay", 0.0) or 0.0),
        batch_size=None if bs is None else int(bs),
        epochs=n_epochs,
        loss=loss,
        label_smoothing=float(train.get("label_smoothing", 0.0) or 0.0),
        shuffle=bool(train.get("shuffle", True) if shuffle is None else shuffle),
        betas=tuple(train.get("betas", (0.9, 0.999))),
        eps=float(train.get("eps", 1e-8)),
        momentum=float(train.get("momentum", 0.0) or 0.0),
        nesterov=bool(train.get("nesterov", False)),
    )


def _make_optimizer(params: Sequence[Tensor], s: _Settings) -> torch.optim.Optimizer:
    # foreach=None: PyTorch's default (single-tensor kernels on CPU, foreach on CUDA); the
    # batched and the one-at-a-time paths use the same choice.
    if s.optimizer == "adam":
        return torch.optim.Adam(
            params, lr=s.lr, betas=s.betas, eps=s.eps, weight_decay=s.weight_decay, foreach=None
        )
    if s.optimizer == "adamw":
        return torch.optim.AdamW(
            params, lr=s.lr, betas=s.betas, eps=s.eps, weight_decay=s.weight_decay, foreach=None
        )
    return torch.optim.SGD(
        params,
        lr=s.lr,
        momentum=s.momentum,
        weight_decay=s.weight_decay,
        nesterov=s.nesterov,
        foreach=None,
    )


def fold_seed(seed: int, subject: str) -> int:
    """The seed of one fold: a stable hash of the run seed and the subject."""
    return zlib.crc32(f"{seed}/{subject}".encode()) & 0x7FFFFFFF


# ---------------------------------------------------------------------------------------
# The public entry point.


def train_loso(
    model_name: str,
    inputs: Sequence[np.ndarray | Tensor] | np.ndarray | Tensor,
    labels: np.ndarray | Tensor | Sequence[int],
    subjects: Sequence[str] | np.ndarray,
    *,
    epochs: int | None = None,
    selection: str = "last",
    seed: int = 0,
    device: str | torch.device = "cpu",
    lr: float | None = None,
    batch_size: int | str | None = None,
    shuffle: bool | None = None,
    folds: Sequence[str] | int | None = None,
    fold_batch: int | str = "auto",
    dtype: torch.dtype = torch.float32,
    amp: bool = False,
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
        epochs: epochs per fold; ``None`` = the model spec's.
        selection: ``"last"`` (default) or ``"test-best"`` (see the module doc).
        seed: run seed; fold seeds derive from it and the subject.
        device: where everything runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).
        lr: learning rate; ``None`` = the spec's.
        batch_size: ``None`` = the spec's; ``"full"`` = full batch; or an int.
        shuffle: reshuffle each fold's training set every epoch; ``None`` = the spec's
            ``shuffle`` (the official scripts do not shuffle), ``True`` when it has none.
        folds: run only these subjects' folds, or the first ``folds`` folds in sorted order;
            ``None`` = all.
        fold_batch: folds trained together as one batched model: an int (1 = one at a
            time, no vmap), or ``"auto"``: one at a time on CPU (measured faster there), on
            an accelerator as many as a memory estimate allows.
        dtype: dtype of the parameters and of the inputs on the device.
        amp: run forward passes under ``torch.autocast`` (bfloat16).
        model_options: builder options (ablations), see ``get_spec(name).options``.
        num_classes: number of classes of the label scheme.
        progress: called as ``progress(folds_done, folds_total)`` after each group.
        return_features: also return each test sample's ``forward_features`` of its fold's
            final model (t-SNE); trains one fold at a time.
        return_states: also return each fold's final weights (checkpoints).
        workers: on CPU, train groups of folds in this many processes at once (spawned,
            one torch thread each); folds are independent, so a small model uses every
            core without intra-op threads fighting over tiny kernels. Results do not depend
            on it beyond float rounding. Ignored on accelerators.

    Returns:
        a ``LosoResult``.
    """
    from mefeat.models import get_spec

    t_start = time.perf_counter()
    if selection not in SELECTIONS:
        raise TrainingError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    spec = get_spec(model_name)
    options = dict(model_options or {})
    unknown = set(options) - set(spec.options)
    if unknown:
        raise ModelError(
            f"model {model_name!r} has no option(s) {sorted(unknown)}; "
            f"its options are {sorted(spec.options)}"
        )
    s = _resolve_settings(
        spec.train, epochs=epochs, lr=lr, batch_size=batch_size, shuffle=shuffle, name=model_name
    )
    dev = torch.device(device)

    xs_in = (inputs,) if isinstance(inputs, (np.ndarray, Tensor)) else tuple(inputs)
    y_np = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels).astype(np.int64)
    n = int(y_np.shape[0])
    subj = np.asarray([str(v) for v in subjects], dtype=object)
    _check_inputs(xs_in, y_np, subj, spec.input_shapes, num_classes, model_name)

    all_folds = loso_folds(subj)
    if folds is None:
        run_folds = all_folds
    elif isinstance(folds, int):
        run_folds = all_folds[: max(0, folds)]
    else:
        wanted = {str(f) for f in folds}
        missing = wanted - {f[0] for f in all_folds}
        if missing:
            raise TrainingError(f"folds {sorted(missing)} are not subjects of the data")
        run_folds = [f for f in all_folds if f[0] in wanted]
    if not run_folds:
        raise TrainingError("no fold to run (folds= selected none)")

    # Data resident on the device, once.
    xs = tuple(torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x) for x in xs_in)
    # Contiguous (NCHW): a channels-last array (e.g. from HWC images transposed) makes
    # PyTorch's CPU batch norm several times slower.
    xs = tuple(x.to(device=dev, dtype=dtype).contiguous() for x in xs)
    y = torch.as_tensor(y_np, device=dev)

    ctx = _Context(
        build=_Builder(model_name, num_classes, options, dev, dtype),
        xs=xs,
        y=y,
        s=s,
        dev=dev,
        amp=amp,
        selection=selection,
        seed=seed,
        num_classes=num_classes,
        keep_features=return_features,
        keep_states=return_states,
    )
    if return_features:
        fold_batch = 1  # features come from the plain per-fold module

    # How many folds per batched model.
    batching_note = "one fold at a time (fold_batch=1)"
    if fold_batch == "auto" and dev.type == "cpu":
        # Measured on 2 cores: vmapped convolutions (grouped conv backward) and the larger
        # stacked activations are slower per fold than a plain loop on CPU.
        k_max = 1
        batching_note = "one fold at a time (auto on CPU: a plain loop beats vmap there)"
    elif fold_batch == "auto" or (isinstance(fold_batch, int) and fold_batch > 1):
        ok, why = _probe_vmap(ctx, run_folds)
        if not ok:
            k_max = 1
            batching_note = f"one fold at a time: vmap failed on this model ({why})"
        elif fold_batch == "auto":
            k_max = _auto_fold_batch(ctx, run_folds)
            batching_note = f"batched (vmap), up to {k_max} folds per group (auto)"
        else:
            k_max = int(fold_batch)
            batching_note = f"batched (vmap), up to {k_max} folds per group"
    elif isinstance(fold_batch, int) and fold_batch == 1:
        k_max = 1
    else:
        raise TrainingError(f"fold_batch must be 'auto' or an int >= 1, got {fold_batch!r}")

    # Group folds with the same number of optimiser steps per epoch, so that every fold of
    # a group takes the same Adam steps (bias corrections agree).
    groups: dict[int, list] = {}
    for f in run_folds:
        groups.setdefault(_steps_per_epoch(len(f[1]), s.batch_size), []).append(f)
    chunks = [g[i : i + k_max] for _, g in sorted(groups.items()) for i in range(0, len(g), k_max)]

    logits = np.full((n, num_classes), np.nan, dtype=np.float32)
    pred_epoch = np.zeros(n, dtype=np.int64)
    epoch_preds = np.full((s.epochs, n), -1, dtype=np.int16) if selection == "test-best" else None
    best_epoch: dict[str, int] | None = {} if selection == "test-best" else None
    fold_seconds: dict[str, float] = {}
    features: np.ndarray | None = None
    states: dict[str, dict[str, Tensor]] = {}
    if not isinstance(workers, int) or workers < 1:
        raise TrainingError(f"workers must be an int >= 1, got {workers!r}")
    n_workers = min(workers, len(chunks)) if dev.type == "cpu" else 1
    if n_workers > 1:
        from mefeat.run.executors import run_jobs

        batching_note += f"; {n_workers} worker processes"
        results = run_jobs(_train_chunk, [(ctx, c, k_max) for c in chunks],
                           executor="process", workers=n_workers)
    else:
        results = ((i, _train_chunk(ctx, c, k_max)) for i, c in enumerate(chunks))
    done = 0
    for i, (out, seconds) in results:
        chunk = chunks[i]
        dt = seconds / len(chunk)
        for (subject, _, test_idx), fo in zip(chunk, out, strict=True):
            fold_seconds[subject] = dt
            logits[test_idx] = fo["logits"]
            pred_epoch[test_idx] = fo["epoch"]
            if best_epoch is not None:
                best_epoch[subject] = int(fo["epoch"])
                epoch_preds[:, test_idx] = fo["epoch_preds"]
            if "features" in fo:
                if features is None:
                    features = np.full((n, fo["features"].shape[1]), np.nan, np.float32)
                features[test_idx] = fo["features"]
            if "state" in fo:
                states[subject] = fo["state"]
        done += len(chunk)
        if progress is not None:
            progress(done, len(run_folds))

    import pandas as pd

    rows = []
    for subject, _, test_idx in run_folds:
        dataset = subject.split("/", 1)[0] if "/" in subject else ""
        for i in test_idx:
            rows.append(
                {
                    "index": int(i),
                    "subject": subject,
                    "dataset": dataset,
                    "label": int(y_np[i]),
                    "prediction": int(np.argmax(logits[i])),
                    "epoch": int(pred_epoch[i]),
                }
            )
    predictions = pd.DataFrame(
        rows, columns=["index", "subject", "dataset", "label", "prediction", "epoch"]
    )
    settings = {
        "optimizer": s.optimizer,
        "lr": s.lr,
        "weight_decay": s.weight_decay,
        "batch_size": s.batch_size if s.batch_size is not None else "full",
        "epochs": s.epochs,
        "loss": s.loss,
        "label_smoothing": s.label_smoothing,
        "shuffle": s.shuffle,
        "betas": list(s.betas),
        "eps": s.eps,
        "momentum": s.momentum,
        "dtype": str(dtype).replace("torch.", ""),
        "amp": amp,
        "device": str(dev),
        "model_options": options,
        "fold_batching": batching_note,
        "folds": [f[0] for f in run_folds],
        "torch_threads": torch.get_num_threads(),
        "workers": n_workers,
    }
    return LosoResult(
        model=model_name,
        selection=selection,
        epochs=s.epochs,
        seed=seed,
        num_classes=num_classes,
        settings=settings,
        predictions=predictions,
        logits=logits,
        fold_seconds=fold_seconds,
        best_epoch=best_epoch,
        epoch_predictions=epoch_preds,
        wall_seconds=time.perf_counter() - t_start,
        features=features,
        states=states,
    )


# ---------------------------------------------------------------------------------------
# Internals.


class _Builder:
    """Builds fold models: picklable, so worker processes can build them too."""

    def __init__(self, name: str, num_classes: int, options: Mapping[str, Any],
                 dev: torch.device, dtype: torch.dtype) -> None:
        from mefeat.models import get_spec

        self.name, self.num_classes, self.options = name, num_classes, dict(options)
        self.dev, self.dtype = dev, dtype
        # A model registered from user code lives in the module that registered it; a
        # spawned worker imports that module before building.
        self.module = get_spec(name).builder.__module__

    def __call__(self, fseed: int) -> nn.Module:
        import importlib

        from mefeat.models import create_model, list_models

        if self.name not in list_models() and self.module not in ("__main__", "__mp_main__"):
            importlib.import_module(self.module)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(fseed)
            model = create_model(self.name, num_classes=self.num_classes, **self.options)
        return model.to(device=self.dev, dtype=self.dtype)


def _train_chunk(ctx: _Context, chunk, k_max: int) -> tuple[list[dict[str, Any]], float]:
    """Train one group of folds; returns its per-fold results and the wall seconds."""
    t0 = time.perf_counter()
    if len(chunk) == 1 and k_max == 1:
        out = _train_sequential(ctx, chunk[0])
    else:
        out = _train_batched(ctx, chunk)
    if ctx.dev.type == "cuda":
        torch.cuda.synchronize(ctx.dev)
    return out, time.perf_counter() - t0


@dataclass
class _Context:
    build: Callable[[int], nn.Module]
    xs: tuple[Tensor, ...]
    y: Tensor
    s: _Settings
    dev: torch.device
    amp: bool
    selection: str
    seed: int
    num_classes: int
    keep_features: bool = False
    keep_states: bool = False

    def autocast(self) -> Any:
        return torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.amp)

    def model_input(self, xs: Sequence[Tensor]) -> Tensor | tuple[Tensor, ...]:
        return xs[0] if len(xs) == 1 else tuple(xs)


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


def _steps_per_epoch(n_train: int, batch_size: int | None) -> int:
    return 1 if batch_size is None else max(1, math.ceil(n_train / batch_size))


def _loss(logits: Tensor, target: Tensor, s: _Settings) -> Tensor:
    return F.cross_entropy(
        logits.float(), target, reduction="none", label_smoothing=s.label_smoothing
    )


def _epoch_order(n_train: int, gen: torch.Generator, shuffle: bool) -> Tensor:
    return torch.randperm(n_train, generator=gen) if shuffle else torch.arange(n_train)


def _train_sequential(ctx: _Context, fold) -> list[dict[str, Any]]:
    """One fold, the plain module (no vmap): the reference the batched path must match."""
    subject, train_idx, test_idx = fold
    s, dev = ctx.s, ctx.dev
    fseed = fold_seed(ctx.seed, subject)
    model = ctx.build(fseed)
    opt = _make_optimizer(list(model.parameters()), s)
    gen = torch.Generator().manual_seed(fseed + 1)
    tr = torch.as_tensor(train_idx, device=dev)
    te = torch.as_tensor(test_idx, device=dev)
    x_test = ctx.model_input([x[te] for x in ctx.xs])
    y_test = ctx.y[te]
    bs = s.batch_size or len(train_idx)
    steps = _steps_per_epoch(len(train_idx), s.batch_size)
    best = _BestTracker(ctx, 1, len(test_idx))
    # Without shuffling every epoch sees the same batches: gather them once.
    fixed = None
    if not s.shuffle:
        fixed = []
        for j in range(steps):
            idx = tr[j * bs : (j + 1) * bs]
            fixed.append((ctx.model_input([x[idx] for x in ctx.xs]), ctx.y[idx]))
    devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(fseed + 2)  # dropout stream of this fold
        for epoch in range(1, s.epochs + 1):
            model.train()
            if fixed is None:
                order = tr[_epoch_order(len(train_idx), gen, True).to(dev, non_blocking=True)]
                batches = (
                    (ctx.model_input([x[idx] for x in ctx.xs]), ctx.y[idx])
                    for idx in (order[j * bs : (j + 1) * bs] for j in range(steps))
                )
            else:
                batches = fixed
            for xb, yb in batches:
                with ctx.autocast():
                    out = model(xb)
                loss = _loss(out, yb, s).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if ctx.selection == "test-best" or epoch == s.epochs:
                model.eval()
                with torch.no_grad(), ctx.autocast():
                    out = model(x_test).float()
                best.update(epoch, out[None], y_test[None], None)
    results = best.results()
    if ctx.keep_features:  # the final model's features of the held-out samples
        model.eval()
        with torch.no_grad(), ctx.autocast():
            results[0]["features"] = model.forward_features(x_test).float().cpu().numpy()
    if ctx.keep_states:
        results[0]["state"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return results


class _BestTracker:
    """Keeps, on the device, the selected epoch's logits per fold (and every epoch's
    predictions for test-best) without syncing."""

    def __init__(self, ctx: _Context, k: int, t_max: int) -> None:
        self.ctx = ctx
        dev = ctx.dev
        self.logits = torch.zeros(k, t_max, ctx.num_classes, device=dev)
        self.epoch = torch.zeros(k, dtype=torch.long, device=dev)
        self.best_acc = torch.full((k,), -1.0, device=dev)
        self.per_epoch = (
            torch.full((ctx.s.epochs, k, t_max), -1, dtype=torch.int16, device=dev)
            if ctx.selection == "test-best"
            else None
        )

    def update(self, epoch: int, logits: Tensor, target: Tensor, mask: Tensor | None) -> None:
        pred = logits.argmax(-1)
        if self.per_epoch is None:  # "last": called once, after the last epoch
            self.logits.copy_(logits)
            self.epoch.fill_(epoch)
            return
        self.per_epoch[epoch - 1] = pred.to(torch.int16)
        correct = (pred == target).float()
        if mask is None:
            acc = correct.mean(-1)
        else:
            acc = (correct * mask).sum(-1) / mask.sum(-1)
        better = acc >= self.best_acc  # ties: the later epoch, as main_HTNet.py's `<=`
        self.best_acc = torch.where(better, acc, self.best_acc)
        self.logits = torch.where(better[:, None, None], logits, self.logits)
        self.epoch = torch.where(better, torch.full_like(self.epoch, epoch), self.epoch)

    def results(self, sizes: Sequence[int] | None = None) -> list[dict[str, Any]]:
        logits = self.logits.cpu().numpy()  # the one sync
        epoch = self.epoch.cpu().numpy()
        per_epoch = None if self.per_epoch is None else self.per_epoch.cpu().numpy()
        out = []
        for k in range(logits.shape[0]):
            t = logits.shape[1] if sizes is None else sizes[k]
            out.append(
                {
                    "logits": logits[k, :t],
                    "epoch": int(epoch[k]),
                    "epoch_preds": None if per_epoch is None else per_epoch[:, k, :t],
                }
            )
        return out


def _stacked_call(template: nn.Module, n_inputs: int) -> Callable[..., Tensor]:
    from torch.func import functional_call

    def call(params, buffers, mask, *xs):
        _MASK.value = mask
        try:
            x = xs[0] if n_inputs == 1 else tuple(xs)
            return functional_call(template, (params, buffers), (x,))
        finally:
            _MASK.value = None

    return torch.vmap(call, in_dims=(0, 0, 0) + (0,) * n_inputs, randomness="different")


def _pad_index(idx_list: Sequence[np.ndarray], width: int, dev: torch.device):
    k = len(idx_list)
    idx = np.zeros((k, width), dtype=np.int64)
    mask = np.zeros((k, width), dtype=np.float32)
    for i, a in enumerate(idx_list):
        idx[i, : len(a)] = a
        idx[i, len(a) :] = a[0] if len(a) else 0
        mask[i, : len(a)] = 1.0
    return torch.as_tensor(idx, device=dev), torch.as_tensor(mask, device=dev)


def _train_batched(ctx: _Context, chunk) -> list[dict[str, Any]]:
    """K folds with the same steps per epoch as one vmapped model."""
    from torch.func import stack_module_state

    s, dev = ctx.s, ctx.dev
    k = len(chunk)
    fseeds = [fold_seed(ctx.seed, f[0]) for f in chunk]
    models = [ctx.build(fs) for fs in fseeds]
    params, buffers = stack_module_state(models)
    template = _mask_batchnorms(copy.deepcopy(models[0]))
    del models
    vm = _stacked_call(template, len(ctx.xs))
    opt = _make_optimizer(list(params.values()), s)

    n_train = [len(f[1]) for f in chunk]
    n_max = max(n_train)
    bs = min(s.batch_size or n_max, n_max)
    steps = _steps_per_epoch(n_train[0], s.batch_size)
    width = steps * bs  # every fold's epoch laid out as `steps` batches of `bs`, padded
    train_pad, _ = _pad_index([f[1] for f in chunk], n_max, dev)
    test_sizes = [len(f[2]) for f in chunk]
    test_pad, test_mask = _pad_index([f[2] for f in chunk], max(test_sizes), dev)
    x_test = [x[test_pad] for x in ctx.xs]
    y_test = ctx.y[test_pad]

    # Positions (into each fold's own training list) of one epoch, padded to `width`.
    gens = [torch.Generator().manual_seed(fs + 1) for fs in fseeds]
    pos_mask = torch.zeros(k, width, device=dev)
    for i, nt in enumerate(n_train):
        pos_mask[i, :nt] = 1.0
    pos_mask = pos_mask.view(k, steps, bs)

    def epoch_positions() -> Tensor:
        pos = torch.zeros(k, width, dtype=torch.long)
        for i, nt in enumerate(n_train):
            pos[i, :nt] = _epoch_order(nt, gens[i], s.shuffle)
        return pos.to(dev, non_blocking=True).view(k, steps, bs)

    fixed = None if s.shuffle else epoch_positions()
    best = _BestTracker(ctx, k, max(test_sizes))
    devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(fold_seed(ctx.seed, "|".join(f[0] for f in chunk)))
        for epoch in range(1, s.epochs + 1):
            template.train()
            pos = fixed if fixed is not None else epoch_positions()
            for j in range(steps):
                idx = train_pad.gather(1, pos[:, j])  # (K, bs) global sample indices
                mask = pos_mask[:, j]
                with ctx.autocast():
                    out = vm(params, buffers, mask, *[x[idx] for x in ctx.xs])
                per = _loss(out.reshape(-1, out.shape[-1]), ctx.y[idx].reshape(-1), s)
                # Sum over folds of each fold's mean loss: the folds' gradients stay apart.
                loss = ((per.view(k, bs) * mask).sum(1) / mask.sum(1)).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if ctx.selection == "test-best" or epoch == s.epochs:
                template.eval()
                with torch.no_grad(), ctx.autocast():
                    out = vm(params, buffers, test_mask, *x_test).float()
                best.update(epoch, out, y_test, test_mask)
    results = best.results(test_sizes)
    if ctx.keep_states:  # fold i's weights are slice i of the stacked tensors
        names = set(template.state_dict())
        for i, r in enumerate(results):
            r["state"] = {name: t[i].detach().cpu() for name, t in (*params.items(),
                                                                    *buffers.items())
                          if name in names}
    return results


def _probe_vmap(ctx: _Context, run_folds) -> tuple[bool, str]:
    """Can this model train under vmap? One forward/backward of two folds on two samples."""
    from torch.func import stack_module_state

    try:
        models = [ctx.build(fold_seed(ctx.seed, f"probe{i}")) for i in range(2)]
        params, buffers = stack_module_state(models)
        template = _mask_batchnorms(copy.deepcopy(models[0]))
        vm = _stacked_call(template, len(ctx.xs))
        idx = torch.as_tensor(
            np.stack([run_folds[0][1][:2]] * 2) if len(run_folds[0][1]) >= 2 else [[0, 0]] * 2,
            device=ctx.dev,
        )
        mask = torch.ones(idx.shape, device=ctx.dev)
        with torch.random.fork_rng(devices=[ctx.dev] if ctx.dev.type == "cuda" else []):
            template.train()
            with ctx.autocast():
                out = vm(params, buffers, mask, *[x[idx] for x in ctx.xs])
            out.float().sum().backward()
            template.eval()
            with torch.no_grad(), ctx.autocast():
                vm(params, buffers, mask, *[x[idx] for x in ctx.xs])
        if tuple(out.shape) != (2, idx.shape[1], ctx.num_classes):
            return False, f"batched output has shape {tuple(out.shape)}"
        return True, ""
    except Exception as exc:  # any failure means: train this model one fold at a time
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


def _auto_fold_batch(ctx: _Context, run_folds) -> int:
    """Folds per group that fit a conservative memory budget."""
    model = ctx.build(0)
    n_params = sum(p.numel() for p in model.parameters())
    elt = torch.finfo(ctx.xs[0].dtype).bits // 8 if ctx.xs[0].is_floating_point() else 4
    # Activation size of one sample: the outputs of every leaf module (saved for backward).
    act = [0]

    def hook(_m, _i, o):
        if isinstance(o, Tensor):
            act[0] += o.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model.eval()
            model(ctx.model_input([x[:1] for x in ctx.xs]))
    finally:
        for h in handles:
            h.remove()
    n_max = max(len(f[1]) for f in run_folds)
    bs = min(ctx.s.batch_size or n_max, n_max)
    sample_bytes = sum(x[0].numel() for x in ctx.xs) * elt
    per_fold = n_params * 4 * 4 + bs * (act[0] * 3 * 4 + sample_bytes)
    if ctx.dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(ctx.dev)
        budget = 0.5 * free
    else:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 8 << 30
        budget = 0.25 * total
    return int(max(1, min(len(run_folds), budget // max(per_fold, 1))))
