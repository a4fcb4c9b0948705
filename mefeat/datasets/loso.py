"""Leave-one-subject-out (LOSO) folds, the protocol of MEGC2019 and of every baseline.

One fold per subject: the subject's clips are the test set and every other clip trains.
Subjects are compared as strings that already carry the dataset (``"casme2/sub01"``,
``"samm/006"``), so subjects of different datasets never merge.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def loso_folds(subjects: Sequence[str] | np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """One ``(subject, train_idx, test_idx)`` per subject, subjects in sorted order.

    Args:
        subjects: the subject of each sample, shape (N,).

    Returns:
        a list of folds; ``train_idx`` and ``test_idx`` are sorted int64 index arrays into
        ``subjects`` that partition ``range(N)``.
    """
    s = np.asarray([str(v) for v in subjects], dtype=object)
    if s.size == 0:
        raise ValueError("loso_folds needs at least one sample")
    folds = []
    for subject in sorted(set(s.tolist())):
        is_test = s == subject
        folds.append(
            (
                subject,
                np.flatnonzero(~is_test).astype(np.int64),
                np.flatnonzero(is_test).astype(np.int64),
            )
        )
    return folds
