"""Key frames: the annotated ones, noisy ones (robustness benchmark) or a spotted apex.

See :mod:`mefeat.keyframes.policies` for the policies and their exact rules and
:mod:`mefeat.keyframes.spotting` for the apex spotting methods.
"""

from .policies import (
    KEY_NAMES,
    GroundTruth,
    KeyFrames,
    Noise,
    Policy,
    Spot,
    parse_policy,
    stable_hash,
)
from .spotting import (
    SPOT_DEFAULTS,
    SPOT_METHODS,
    featdiff_curve,
    flowpeak_curve,
    spot_apex,
    spotting_errors,
)

__all__ = [
    "KEY_NAMES",
    "SPOT_DEFAULTS",
    "SPOT_METHODS",
    "GroundTruth",
    "KeyFrames",
    "Noise",
    "Policy",
    "Spot",
    "featdiff_curve",
    "flowpeak_curve",
    "parse_policy",
    "spot_apex",
    "spotting_errors",
    "stable_hash",
]
