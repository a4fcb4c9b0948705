"""The SoftNet spotter trained leave-one-subject-out on long videos (MEGC 2022 recipe).

For each subject, a fresh :class:`mefeat.models.softnet.SoftNet` is trained on the other
subjects' videos (``training.py`` of genbing99/SoftNet-SpotME @dd43d1e, cited by line):

- samples: every frame t with a flow to t+k, its ROI image, its label
  (:func:`mefeat.keyframes.softnet.frame_labels`, lines 23-33);
- half of the negative frames kept at random, all positives (lines 203-212); for
  micro-expressions each positive also flipped left-right, blurred (7x7 Gaussian) and
  noised (Gaussian, variance 0.01), three more samples (lines 89-102, 216-217);
- MSE, SGD with learning rate 0.0005, batch 12, 10 epochs (lines 126-127, 182-183); each
  channel of each sample min-max scaled (:func:`mefeat.models.softnet.minmax`).

Two differences from SoftNet's code: it trains and scores only the videos with an
expression of the kind (``load_label.py``'s ``vid_need``), where here every video takes
part (the challenge scores every video, a video without expressions for its false
positives); and its ``random_noise`` clips the noisy copy to [0, 1] (or [-1, 1]), which
this noise (on ROI values that are flows, not intensities) does not.

Then the held-out subject's videos are scored. SoftNet's threshold factor p (0.55 for every
dataset and kind, line 186) was fixed on the published results; here, by default
(``p="train"``), each fold picks p from 0.05..0.95 to maximise the F1 of its own training
videos, never looking at the held-out subject. ``p=<number>`` fixes it (``0.55``:
SoftNet's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from mefeat.errors import MefeatError
from mefeat.keyframes.challenge import Expression, spotting_scores
from mefeat.keyframes.softnet import frame_labels, score_intervals, smooth_scores
from mefeat.models.softnet import SoftNet, minmax

P_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))


@dataclass
class SpotVideo:
    """One video for the spotter: its ROI images (T, 42, 42, 3) for the kind's k (rows
    T-k.. are empty), its subject and its expressions of the kind ``(onset, offset)``."""

    key: str
    subject: str
    roi: np.ndarray
    truth: list[tuple[int, int]] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return len(self.roi)


def _tensor(x: np.ndarray) -> torch.Tensor:
    return minmax(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    flipped = x[:, :, ::-1]
    blurred = np.stack([cv2.GaussianBlur(img, (7, 7), 0) for img in x])
    noisy = x + rng.normal(0, 0.1, x.shape).astype(np.float32)
    return np.concatenate([flipped, blurred, noisy])


def training_set(videos: Sequence[SpotVideo], k: int, *, augment: bool,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The samples and labels of ``videos`` as SoftNet trains on them (module docstring)."""
    xs, ys = [], []
    for v in videos:
        y = frame_labels(v.n_frames, v.truth, k)
        xs.append(v.roi[:len(y)])
        ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    keep = np.sort(np.concatenate([pos, rng.choice(neg, len(neg) // 2, replace=False)]))
    x, y = x[keep], y[keep]
    if augment and (y == 1).any():
        extra = _augment(x[y == 1], rng)
        x, y = np.concatenate([x, extra]), np.concatenate([y, np.ones(len(extra), np.float32)])
    order = rng.permutation(len(y))
    return x[order], y[order]


def train_softnet(videos: Sequence[SpotVideo], k: int, *, augment: bool, seed: int = 0,
                  epochs: int = 10, batch_size: int = 12, lr: float = 5e-4,
                  device: str = "cpu") -> SoftNet:
    """A SoftNet trained on ``videos`` (SoftNet's recipe, module docstring) on ``device``."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    x, y = training_set(videos, k, augment=augment, rng=rng)
    model = SoftNet().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    xt, yt = _tensor(x).to(device), torch.from_numpy(y).to(device)
    model.train()
    for _ in range(epochs):
        for i in range(0, len(yt), batch_size):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(xt[i:i + batch_size]),
                                                yt[i:i + batch_size])
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def frame_scores(model: SoftNet, video: SpotVideo, k: int, batch_size: int = 512) -> np.ndarray:
    """The model's raw score of frames 0..T-k-1 of ``video`` (on the model's device)."""
    device = next(model.parameters()).device
    x = video.roi[:max(video.n_frames - k, 0)]
    return np.concatenate([model(_tensor(x[i:i + batch_size]).to(device)).cpu().numpy()
                           for i in range(0, len(x), batch_size)] or [np.zeros(0)])


def choose_p(curves: dict[str, np.ndarray], videos: Sequence[SpotVideo], k: int,
             kind: str) -> float:
    """The p of :data:`P_GRID` with the best F1 on ``videos`` (their smoothed ``curves``),
    ties to the one nearest SoftNet's 0.55."""
    truth = [Expression(v.key, a, b, kind) for v in videos for a, b in v.truth]

    def f1(p: float) -> float:
        spotted = [Expression(v.key, a, b, kind) for v in videos
                   for a, _, b, _ in score_intervals(curves[v.key], k, p)]
        return spotting_scores(truth, spotted)[kind]["f1"]

    return max(P_GRID, key=lambda p: (f1(p), -abs(p - 0.55)))


@dataclass
class FoldSpots:
    subject: str
    p: float
    curves: dict[str, np.ndarray]  # video key -> smoothed score per frame
    intervals: dict[str, list[tuple[int, int, int, float]]]


def softnet_loso(videos: Sequence[SpotVideo], k: int, kind: str, *, p: float | str = "train",
                 seed: int = 0, epochs: int = 10, progress: bool = False,
                 device: str = "cpu") -> list[FoldSpots]:
    """One fold per subject: SoftNet trained on the others, the subject's videos scored and
    their intervals found with p chosen on the training videos (or fixed)."""
    subjects = sorted({v.subject for v in videos})
    if len(subjects) < 2:
        raise MefeatError(f"softnet: leave-one-subject-out needs 2 subjects or more, the "
                          f"store has {subjects}")
    from tqdm import tqdm

    folds = []
    for i, s in enumerate(tqdm(subjects, desc=f"softnet {kind} k={k}", unit="fold",
                               disable=not progress)):
        train = [v for v in videos if v.subject != s]
        test = [v for v in videos if v.subject == s]
        model = train_softnet(train, k, augment=kind == "micro", seed=seed + i, epochs=epochs,
                              device=device)
        smooth = {v.key: smooth_scores(frame_scores(model, v, k), k, v.n_frames)
                  for v in test}
        if p == "train":
            fitted = {v.key: smooth_scores(frame_scores(model, v, k), k, v.n_frames)
                      for v in train}
            chosen = choose_p(fitted, train, k, kind)
        else:
            chosen = float(p)
        folds.append(FoldSpots(s, chosen, smooth,
                               {key: score_intervals(c, k, chosen) for key, c in smooth.items()}))
    return folds
