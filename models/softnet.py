"""SoftNet, the shallow three-stream spotting CNN of the MEGC 2022 spotting baseline.

Liong, See, Wong & Liong, "Shallow Optical Flow Three-Stream CNN for Macro- and
Micro-Expression Spotting from Long Videos", ICIP 2021; code genbing99/SoftNet-SpotME
@dd43d1e, ``training.py`` 104-128 (Keras). It is no recognition model (it regresses one
score per frame, see :mod:`mefeat.keyframes.softnet`), so it is not in the registry;
:func:`mefeat.train.spotting.train_softnet` trains it.

Input (N, 3, 42, 42): the ROI image of :func:`mefeat.flow.roi.roi_image`, each channel
scaled to [0, 1] per sample (:func:`minmax`). Each channel is one stream: a 5x5 'same'
convolution (3, 5 and 8 filters) with ReLU and a 3x3 max-pool of stride 3 (42 -> 14); the
16 maps concatenated, max-pooled 2x2 (14 -> 7), flattened (784), Dense 400 with ReLU,
Dense 1 linear. Weights start as Keras's (Glorot uniform, zero biases).
"""

from __future__ import annotations

import torch
from torch import nn


class SoftNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.streams = nn.ModuleList(nn.Conv2d(1, c, 5, padding=2) for c in (3, 5, 8))
        self.pool = nn.MaxPool2d(3, 3)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc = nn.Linear(16 * 7 * 7, 400)
        self.out = nn.Linear(400, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [self.pool(torch.relu(conv(x[:, i:i + 1])))
                for i, conv in enumerate(self.streams)]
        # Keras concatenates channels-last (H, W, C) and flattens in that order.
        z = self.pool2(torch.cat(maps, dim=1)).permute(0, 2, 3, 1).flatten(1)
        return self.out(torch.relu(self.fc(z))).squeeze(1)


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Each channel of each sample (N, C, H, W) scaled to [0, 1] (``cv2.NORM_MINMAX``,
    SoftNet ``training.py`` 66-70); a constant channel becomes 0."""
    lo = x.amin(dim=(2, 3), keepdim=True)
    span = x.amax(dim=(2, 3), keepdim=True) - lo
    return torch.where(span > 0, (x - lo) / span.clamp_min(1e-12), torch.zeros_like(x))
