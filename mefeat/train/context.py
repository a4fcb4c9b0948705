"""What a group of folds trains with: the data resident on the device, the recipe, the
model builder, and the record of held-out predictions. Picklable, so worker processes
receive it whole."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mefeat.models.recipe import Recipe


def fold_seed(seed: int, subject: str) -> int:
    """The seed of one fold: a stable hash of the run seed and the subject."""
    return zlib.crc32(f"{seed}/{subject}".encode()) & 0x7FFFFFFF


class Builder:
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


@dataclass
class DeviceJitter:
    """A :class:`mefeat.views.jitter.JitteredFrames` bank on the training device."""

    bank: Tensor  # (M, S, S) uint8
    start: np.ndarray
    count: np.ndarray
    to_inputs: Any

    def draw(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.start[samples] + rng.integers(0, self.count[samples])

    def inputs(self, rows: np.ndarray) -> tuple[Tensor, ...]:
        frames = self.bank[torch.as_tensor(rows, device=self.bank.device)]  # (B, K, S, S)
        out = self.to_inputs(frames)
        return out if isinstance(out, tuple) else (out,)


@dataclass
class FoldContext:
    name: str
    build: Builder
    xs: tuple[Tensor, ...]
    y: Tensor
    recipe: Recipe
    dev: torch.device
    keep: tuple[int, ...]  # 1-based epochs whose held-out predictions are kept
    seed: int
    num_classes: int
    jitter: DeviceJitter | None = None
    keep_features: bool = False
    keep_states: bool = False
    channels_last: bool = False  # the plain loop's models (CPU, ModelSpec.channels_last)

    def model_input(self, xs: Sequence[Tensor]) -> Tensor | tuple[Tensor, ...]:
        return xs[0] if len(xs) == 1 else tuple(xs)

    def devices(self) -> list[torch.device]:
        """Devices whose random state a fold's training forks."""
        return [self.dev] if self.dev.type == "cuda" else []


class EpochRecord:
    """Held-out predictions of the kept epochs and the last epoch's logits, for K folds,
    kept on the device (nothing syncs until :meth:`results`)."""

    def __init__(self, keep: Sequence[int], k: int, t_max: int, dev: torch.device) -> None:
        self.row = {e: i for i, e in enumerate(keep)}
        self.last = max(keep)
        self.preds = torch.full((len(keep), k, t_max), -1, dtype=torch.int16, device=dev)
        self.logits: Tensor | None = None

    def wants(self, epoch: int) -> bool:
        return epoch in self.row

    def update(self, epoch: int, logits: Tensor) -> None:
        """``logits``: (K, T, width) of epoch ``epoch`` (a kept one)."""
        self.preds[self.row[epoch]] = logits.argmax(-1).to(torch.int16)
        if epoch == self.last:
            self.logits = logits.float()

    def results(self, sizes: Sequence[int]) -> list[dict[str, Any]]:
        preds = self.preds.cpu().numpy()  # the one sync
        logits = self.logits.cpu().numpy()
        return [{"preds": preds[:, k, :t], "logits": logits[k, :t]}
                for k, t in enumerate(sizes)]
