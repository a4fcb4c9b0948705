"""``spot``: apex spotting on a store's aligned frames, scored against the annotated apex."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from mefeat.keyframes import SPOT_METHODS, spot_apex, spotting_errors
from mefeat.store import FeatureStore


def spot_store(
    store: str | os.PathLike, *, methods: Sequence[str] = tuple(SPOT_METHODS),
    within: Sequence[int] = (1, 2, 5),
) -> dict[str, Any]:
    """Spot the apex of every clip with aligned frames; frame errors per method.

    Clips whose onset and offset are fewer than 2 frames apart cannot hold a spotted apex
    and are listed under ``skipped``.
    """
    fs = FeatureStore.open(store)
    t = fs.table()
    spotted: dict[str, list[int]] = {m: [] for m in methods}
    truth, keys, skipped = [], [], []
    for i, key in enumerate(t["key"]):
        onset, apex, offset = int(t["onset"][i]), int(t["apex"][i]), int(t["offset"][i])
        if not fs.has_frames(key) or offset - onset < 2:
            skipped.append(key)
            continue
        frames, _ = fs.read_frames(key)
        for m in methods:
            spotted[m].append(spot_apex(frames, onset, offset, m))
        truth.append(apex)
        keys.append(key)
    return {
        "store": str(store),
        "clips": len(keys),
        "skipped": skipped,
        "methods": {m: spotting_errors(spotted[m], truth, within=within) for m in methods},
        "per_clip": [{"key": k, "apex": a, **{m: spotted[m][j] for m in methods}}
                     for j, (k, a) in enumerate(zip(keys, truth, strict=True))],
    }
