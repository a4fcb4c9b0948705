"""Key frames: the annotated ones, noisy ones (robustness benchmark) or a spotted apex.

See :mod:`mefeat.keyframes.policies` for the policies and their exact rules,
:mod:`mefeat.keyframes.spotting` for the apex spotting methods and
:mod:`mefeat.keyframes.challenge` for the MEGC long-video scores (spotting, STR).
"""

from .challenge import Expression, spotting_scores, str_scores
from .policies import (
    KEY_NAMES,
    POLICIES,
    BenchColumn,
    GroundTruth,
    KeyFrames,
    Noise,
    Policy,
    Spot,
    bench_columns,
    parse_policy,
    policy_help,
    register_policy,
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
    "Expression",
    "KEY_NAMES",
    "POLICIES",
    "BenchColumn",
    "bench_columns",
    "policy_help",
    "register_policy",
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
    "spotting_scores",
    "stable_hash",
    "str_scores",
]
