"""The training recipe of the OFF-TANet repository, shared by the four models it trains.

ECNU-Cross-Innovation-Lab/PRICAI2021-Off-TANet (one ``master`` branch) trains Off-ApexNet,
Dual-Inception, Micro-attention and OFF-TANet with one loop (``train.py``): a shuffled
DataLoader (L22), plain cross-entropy (L27), the scheduler stepped once per epoch after the
evaluation (L48), the held-out subject evaluated at epochs 0, N, 2N... (0-based), and the
reported epoch the one of best mean over folds of per-fold macro UAR (L65, L82-84). Each
model's block of ``train_arg.py`` (picked by ``model_name``, L13) sets the rest.
"""

from __future__ import annotations

from .recipe import Optimizer, Recipe, Selection, StepLR

REPO = "ECNU-Cross-Innovation-Lab/PRICAI2021-Off-TANet"


def offtanet_repository_recipe(optimizer: Optimizer, *, epochs: int, every: int,
                               batch_size: int = 64, schedule: StepLR | None = None,
                               lines: str) -> Recipe:
    """The recipe of one model's ``train_arg.py`` block (``lines``)."""
    return Recipe(
        optimizer=optimizer,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        schedule=schedule,
        selection=Selection(
            "all-folds", metric="uar", ties="set-order", every=every,
            source=f"{REPO} train.py:65 (per-fold macro UAR), :82-84 (the epoch of best mean "
            f"over folds), train_arg.py:{lines}",
        ),
        source=f"{REPO} train_arg.py:{lines}, train.py:21-48",
    )
