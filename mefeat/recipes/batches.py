"""How a recipe forms its batches: plain batches of ``batch_size`` (shuffled or in a fixed
order, see :class:`~mefeat.recipes.Recipe`) or class-balanced batches drawn by a sampler,
and how many optimizer steps an epoch has."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .parts import RecipeError, need


@dataclass(frozen=True)
class ClassBalancedSampler:
    """Batches of ``n_classes`` classes × ``n_samples`` samples each (SRMCL's
    ``BalancedBatchSampler``): each batch draws ``n_classes`` classes without replacement
    (every class, when a fold's training set has fewer) and takes the next ``n_samples`` of
    each class's shuffled list (reshuffled when used up); an epoch ends before the batch that
    would reach the end of the training set (the official ``while count + batch_size <
    len(dataset)``), so it has ``ceil(n_train / batch) - 1`` batches, at least one."""

    n_classes: int
    n_samples: int

    def __post_init__(self) -> None:
        need(self.n_classes >= 1 and self.n_samples >= 1,
             f"ClassBalancedSampler({self.n_classes}, {self.n_samples})")

    @property
    def batch_size(self) -> int:
        return self.n_classes * self.n_samples

    def batches(self, labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        """One epoch of batches: positions into ``labels`` (a fold's training labels)."""
        classes = np.unique(labels)
        if not len(classes):
            raise RecipeError("the class-balanced sampler got an empty training set")
        pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
        used = dict.fromkeys(classes, 0)
        batches, count, size = [], 0, self.batch_size
        n_classes = min(self.n_classes, len(classes))
        while count + size < len(labels) or (not batches and count == 0):
            chosen = rng.choice(classes, n_classes, replace=False)
            batch = []
            for c in chosen:
                batch.extend(pools[c][used[c]:used[c] + self.n_samples].tolist())
                used[c] += self.n_samples
                if used[c] + self.n_samples > len(pools[c]):
                    pools[c] = rng.permutation(pools[c])
                    used[c] = 0
            batches.append(np.asarray(batch, np.int64))
            count += size
        return batches


@dataclass(frozen=True)
class Oversample:
    """Each fold's training list resampled once, before its first epoch: every class drawn
    with replacement to the count of the fold's largest class, then ordered by the recipe as
    any training list (EDMDBN's offline "balanced sampling" file). Applied to a fold when
    every one of its training samples comes from one of ``datasets`` (the datasets whose
    official configuration turns it on); otherwise the fold trains on its list as it is."""

    datasets: tuple[str, ...]
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "datasets", tuple(self.datasets))
        need(bool(self.datasets), "Oversample needs the datasets it applies to")

    def applies(self, datasets) -> bool:
        """Whether a fold whose training samples come from ``datasets`` oversamples."""
        return bool(len(datasets)) and set(map(str, datasets)) <= set(self.datasets)

    def draw(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Positions into ``labels`` (a fold's training labels): each class's positions drawn
        with replacement to the largest class's count, classes in ascending order."""
        classes, counts = np.unique(labels, return_counts=True)
        need(len(classes) > 0, "oversampling got an empty training set")
        top = int(counts.max())
        return np.concatenate([rng.choice(np.flatnonzero(labels == c), size=top, replace=True)
                               for c in classes]).astype(np.int64)


def steps_per_epoch(batch_size: int | None, sampler: ClassBalancedSampler | None,
                    n_train: int) -> int:
    """Optimizer steps in one epoch of a fold with ``n_train`` training samples."""
    if sampler is not None:  # the sampler's loop: while count + size < n
        return max(1, math.ceil(n_train / sampler.batch_size) - 1)
    if batch_size is None:
        return 1
    return max(1, math.ceil(n_train / batch_size))
