"""What ``mefeat predict`` prints and draws for a prediction (``mefeat.run.predict``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np


def format_prediction(result: dict[str, Any]) -> list[str]:
    """The lines ``mefeat predict`` prints for a result of :func:`predict`."""
    fps = f" at {result['fps']:g} fps" if result.get("fps") else ""
    lines = [f"{result['clip']}: {result['n_frames']} frames{fps} ({result['kind']}); "
             f"{result['model']} from {result['run']}, mean softmax of "
             f"{len(result['folds'])} fold(s)",
             result["spot_note"]]
    width = max(len(c) for c in result["classes"])
    if result["mode"] == "clip":
        lines.append(f"frames: onset {result['onset']}, apex {result['apex']}, "
                     f"offset {result['offset']}")
        lines.append(f"label: {result['label']}")
        lines += [f"  {c:<{width}}  {p:.3f}" for c, p in result["probabilities"].items()]
        return lines
    lines.append(f"video: windows of {result['window']} frames, stride {result['stride']}, "
                 f"threshold {result['threshold']:g}; {len(result['intervals'])} interval(s)")
    for i, iv in enumerate(result["intervals"], 1):
        head = (f"  #{i} onset {iv['onset']}, apex {iv['apex']}, offset {iv['offset']} "
                f"(score {iv['score']:.3f}): ")
        if "error" in iv:
            lines.append(head + f"not classified: {iv['error']}")
            continue
        probs = ", ".join(f"{c} {p:.3f}" for c, p in iv["probabilities"].items())
        lines.append(head + f"{iv['label']}  [{probs}]")
    lines += [f"  skipped {s.get('window') or s.get('interval')}: {s['reason']}"
              for s in result.get("skipped", [])]
    return lines


def draw_prediction(result: dict[str, Any], keyed: Sequence[Any],
                    curves: list[tuple[int, np.ndarray]], out: str | os.PathLike) -> None:
    """One row per expression: onset, apex and offset frames, the onset→apex u and v flow,
    the class probabilities; a video adds a top row with the motion score of each window.

    ``keyed``: per expression, an object with ``onset``, ``apex``, ``offset`` and
    ``pictures`` (the frames and the flow planes to draw)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(k, row) for k, row in zip(keyed, result["intervals"], strict=True)
            if k.pictures]
    top = 1 if result["mode"] == "video" else 0
    nrows = max(top + len(rows), 1)
    fig = plt.figure(figsize=(15, 2.8 * nrows))
    grid = fig.add_gridspec(nrows, 6)
    if top:
        ax = fig.add_subplot(grid[0, :])
        for start, curve in curves:
            ax.plot(np.arange(start, start + len(curve)), curve, lw=1, color="tab:blue",
                    alpha=0.6)
        for k in keyed:
            ax.axvspan(k.onset, k.offset, color="tab:orange", alpha=0.25)
            ax.axvline(k.apex, color="tab:red", lw=1)
        ax.axhline(result["threshold"], color="gray", ls="--", lw=1)
        ax.set_xlim(0, result["n_frames"] - 1)
        ax.set_xlabel("frame")
        ax.set_ylabel("motion score")
        ax.set_title("motion score of each window (threshold dashed); intervals shaded, "
                     "apex in red")
    for r, (k, row) in enumerate(rows, start=top):
        pics = k.pictures
        for c, name in enumerate(("onset", "apex", "offset")):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(pics[name], cmap="gray")
            ax.set_title(f"{name} (frame {getattr(k, name)})")
            ax.set_axis_off()
        lim = float(max(np.abs(pics["u"]).max(), np.abs(pics["v"]).max())) or 1.0
        for c, name in ((3, "u"), (4, "v")):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(pics[name], cmap="coolwarm", vmin=-lim, vmax=lim)
            ax.set_title(f"{name} (onset→apex)")
            ax.set_axis_off()
        ax = fig.add_subplot(grid[r, 5])
        names = list(row["probabilities"])
        values = [row["probabilities"][c] for c in names]
        colors = ["tab:red" if c == row["label"] else "tab:gray" for c in names]
        ax.barh(names, values, color=colors)
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.set_title(f"{row['label']} ({max(values):.2f})")
    fig.suptitle(f"{result['clip']} — {result['model']} ({len(result['folds'])} fold(s))")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
