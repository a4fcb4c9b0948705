"""STSTNet: a shallow triple-stream CNN on one onset→apex optical-flow image.

Method: Liong, Gan, See, Khor, Huang, "Shallow Triple Stream Three-dimensional CNN (STSTNet)
for Micro-expression Recognition", IEEE FG 2019 (arXiv:1902.03634). Official code:
github.com/christy1206/STSTNet (``main.py``, PyTorch re-implementation of the Matlab original;
no licence file in the repository).

The input is one 28×28×3 image made of the horizontal flow, the vertical flow and the optical
strain, each min-max scaled to 0..255 per sample; the official code reads the PNG with
``cv2.imread`` (channels in the PNG's B, G, R order) and feeds the raw 0..255 values as floats.
Three parallel 3×3 convolutions (3, 5 and 8 filters, padding 2) each go through ReLU, batch
norm (after the ReLU, as in the official code), 3×3 max pooling with stride 3 and dropout; the
16 maps are concatenated, average-pooled 2×2 and classified by one linear layer. The parameter
names are the official ones, so the per-subject checkpoints of ``STSTNet_Weights/`` load as
they are (see ``mefeat.train.checkpoints.load_official_state_dict``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .registry import register

# The spatial size after conv (28+2·2-3+1 = 30), max pool (k3 s3 p1 → 10) and avg pool (→ 5).
_POOLED_SIDE = 5


class STSTNet(nn.Module):
    """Shallow triple-stream CNN (official layer names: conv1..3, bn1..3, fc)."""

    def __init__(
        self,
        *,
        num_classes: int = 3,
        in_channels: int = 3,
        widths: tuple[int, int, int] = (3, 5, 8),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=2)
        self.conv2 = nn.Conv2d(in_channels, widths[1], kernel_size=3, padding=2)
        self.conv3 = nn.Conv2d(in_channels, widths[2], kernel_size=3, padding=2)
        self.relu = nn.ReLU()
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.bn2 = nn.BatchNorm2d(widths[1])
        self.bn3 = nn.BatchNorm2d(widths[2])
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=3, padding=1)
        self.avgpool = nn.AvgPool2d(kernel_size=2, stride=2, padding=0)
        self.dropout = nn.Dropout(p=dropout)
        self.num_features = sum(widths) * _POOLED_SIDE * _POOLED_SIDE
        self.fc = nn.Linear(self.num_features, num_classes)

    def _stream(self, x: Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Tensor:
        # Official order: conv -> ReLU -> BN -> max pool -> dropout.
        return self.dropout(self.maxpool(bn(self.relu(conv(x)))))

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 3, 28, 28) flow image -> (B, 400) flattened pooled maps."""
        streams = (
            self._stream(x, self.conv1, self.bn1),
            self._stream(x, self.conv2, self.bn2),
            self._stream(x, self.conv3, self.bn3),
        )
        x = self.avgpool(torch.cat(streams, dim=1))
        return x.flatten(1)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)


@register(
    "ststnet",
    view="ststnet",
    input_shapes=((3, 28, 28),),
    train={
        "optimizer": "adam",
        "lr": 5e-5,
        "weight_decay": 0.0,
        "epochs": 800,
        "batch_size": 256,
        "loss": "cross_entropy",
        "augmentation": None,
        "shuffle": False,
        # The official script trains 800 epochs and reports the last epoch's predictions.
        "epoch_selection": "last",
    },
    paper=(
        "Liong et al., Shallow Triple Stream Three-dimensional CNN (STSTNet) for "
        "Micro-expression Recognition, IEEE FG 2019, arXiv:1902.03634"
    ),
    code="github.com/christy1206/STSTNet (main.py; no licence file)",
    params=1_683,
    options={"dropout": 0.5},
)
def ststnet(*, num_classes: int = 3, dropout: float = 0.5) -> STSTNet:
    """STSTNet as in the official ``main.py`` (1,683 parameters with 3 classes)."""
    return STSTNet(num_classes=num_classes, dropout=dropout)
