"""The timeline figure of a long video: score curves, ground truth and detections."""

from __future__ import annotations

from pathlib import Path

import numpy as np

KIND_COLOURS = {"micro": "tab:red", "macro": "tab:blue"}


def draw_timeline(path: Path, title: str, n_frames: int, curves: dict[str, np.ndarray],
                  truth, spotted: list[dict]) -> Path:
    """A PNG at ``path``: each spotter curve (``curves``: name → (T,) score) on top; below,
    one lane of ground-truth intervals (``truth``: :class:`~mefeat.keyframes.challenge.
    Expression`) and one of detections (rows with ``onset``, ``offset``, ``kind`` and an
    optional ``label``), coloured by kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, lanes) = plt.subplots(2, 1, figsize=(12, 4), sharex=True,
                                     gridspec_kw={"height_ratios": [3, 1.3]})
    for name, curve in curves.items():
        top.plot(np.arange(len(curve)), curve, lw=0.8, label=name,
                 color=KIND_COLOURS.get(name))
    if curves:
        top.legend(loc="upper right", fontsize=8)
    top.set_ylabel("score")
    top.set_title(title, fontsize=10)
    for lane, items in ((1, [(t.onset, t.offset, t.kind, t.label) for t in truth]),
                        (0, [(r["onset"], r["offset"], r["kind"], r.get("label"))
                             for r in spotted])):
        for onset, offset, kind, label in items:
            lanes.broken_barh([(onset, offset - onset + 1)], (lane - 0.35, 0.7),
                              color=KIND_COLOURS.get(kind, "grey"), alpha=0.7)
            if label:
                lanes.text(onset, lane + 0.4, str(label), fontsize=6)
    lanes.set_yticks([0, 1], ["spotted", "truth"])
    lanes.set_ylim(-0.6, 1.9)
    lanes.set_xlim(0, n_frames)
    lanes.set_xlabel("frame (micro red, macro blue)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
