"""Figures of one sample: key frames, flow, strain and direction maps (supplement Fig. 2/3)."""

from __future__ import annotations

import os

import numpy as np

from mefeat.errors import StoreError
from mefeat.store import FeatureStore


def show_sample(store: str | os.PathLike, key: str, *, variant: str | None = None,
                out: str | os.PathLike) -> None:
    """Draw ``key``'s onset/apex/offset frames and both phases' maps into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fs = FeatureStore.open(store)
    keys = [str(k) for k in fs.column("key")]
    if key not in keys:
        near = [k for k in keys if key.split("/")[-1] in k][:5]
        hint = f"; did you mean {near}?" if near else ""
        raise StoreError(f"{store}: no sample {key!r}{hint}")
    i = keys.index(key)
    variant = fs.pick_variant(variant)
    var = fs.variant(variant)
    if not var.done()[i]:
        raise StoreError(f"{store}: sample {key} has no finished {variant!r} features yet")
    frames, landmarks = fs.read_frames(key)
    names = ("keyframes", *(f"{m}_{p}" for m in ("flow", "strain", "dir") for p in ("oa", "ao")))
    g = var.read_sample(i, names)
    onset, apex, offset = (int(x) for x in g["keyframes"])
    fig, axes = plt.subplots(3, 4, figsize=(12, 9))
    for ax, (title, idx) in zip(axes[0, :3], (("onset", onset), ("apex", apex),
                                               ("offset", offset)), strict=True):
        ax.imshow(frames[idx], cmap="gray")
        ax.set_title(f"{title} (frame {idx})")
    axes[0, 0].plot(landmarks[:, 0], landmarks[:, 1], ".", ms=2, color="lime")
    axes[0, 3].imshow(np.abs(frames[apex].astype(int) - frames[onset].astype(int)), cmap="magma")
    axes[0, 3].set_title("|apex − onset|")
    for row, phase in ((1, "oa"), (2, "ao")):
        flow = g[f"flow_{phase}"].astype(np.float32)
        lim = float(np.abs(flow).max()) or 1.0
        axes[row, 0].imshow(flow[0], cmap="coolwarm", vmin=-lim, vmax=lim)
        axes[row, 0].set_title(f"u ({phase})")
        axes[row, 1].imshow(flow[1], cmap="coolwarm", vmin=-lim, vmax=lim)
        axes[row, 1].set_title(f"v ({phase})")
        axes[row, 2].imshow(g[f"strain_{phase}"][0], cmap="viridis")
        axes[row, 2].set_title(f"optical strain ({phase})")
        axes[row, 3].imshow(g[f"dir_{phase}"].transpose(1, 2, 0)[..., ::-1])  # BGR → RGB
        axes[row, 3].set_title(f"direction map ({phase})")
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(f"{key} — variant {variant}")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def confusion_figure(confusion, classes, out: str | os.PathLike, *, title: str = "") -> None:
    """A confusion matrix (rows: true class, columns: predicted) as a PNG, with counts and
    row-normalised shading (supplement Fig. 5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, dtype=float)
    names = list(classes) or [str(i) for i in range(len(cm))]
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 1.2 * len(names) + 1.5))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, f"{int(v)}\n{share[i, j]:.0%}", ha="center", va="center",
                color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def learning_curves(history: list[dict], out: str | os.PathLike, *, title: str = "") -> None:
    """Mean over folds (and runs) per epoch of the training loss, the held-out loss and
    accuracy, and the learning rate, with the range over folds shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = sorted({row["epoch"] for row in history})
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = ((axes[0], ("train_loss", "test_loss"), "loss"), (axes[1], ("test_acc",),
              "held-out accuracy"), (axes[2], ("lr",), "learning rate"))
    for ax, keys, label in panels:
        for key in keys:
            by_epoch = [[row[key] for row in history if row["epoch"] == e] for e in epochs]
            values = [np.asarray(v, float) for v in by_epoch]
            mean = [np.nanmean(v) if np.isfinite(v).any() else np.nan for v in values]
            lo = [np.nanmin(v) if np.isfinite(v).any() else np.nan for v in values]
            hi = [np.nanmax(v) if np.isfinite(v).any() else np.nan for v in values]
            ax.plot(epochs, mean, label=key.replace("_", " "))
            ax.fill_between(epochs, lo, hi, alpha=0.15)
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
