"""Test support: the smallest model the trainer accepts, and a view for tests that hand the
trainer arrays directly."""

from __future__ import annotations

from torch import nn

from mefeat.views import View

# The tests give arrays directly: a view that builds nothing from a store.
ARRAYS_VIEW = View("test", (), lambda arrays, landmarks, src, **options: ())


class LinearNet(nn.Module):
    """A linear classifier of the flattened input (the first one, if given a tuple), with the
    interface of the registered models."""

    def __init__(self, *, in_features: int, num_classes: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def forward_features(self, x):
        x = x[0] if isinstance(x, tuple) else x
        return x.flatten(1)

    def forward_head(self, f):
        return self.fc(f)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.fc.in_features, num_classes)
