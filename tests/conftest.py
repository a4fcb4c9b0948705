"""Shared fixtures: the real face photograph, aligned once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def pytest_configure(config):
    # The test models are tiny: one intra-op thread is faster than two fighting over the
    # cores with the test's own subprocesses, and it keeps timings steady.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.fixture(scope="session")
def aligner():
    from mefeat.face import FaceAligner

    return FaceAligner()


@pytest.fixture(scope="session")
def aligned_face(aligner) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photograph aligned to 224 px, and its 68 landmarks there."""
    from mefeat.synth import face_photo

    frames, landmarks = aligner.align(face_photo()[None], 0)
    return frames[0], landmarks

