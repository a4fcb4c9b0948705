"""Errors a user can cause.

Every error that bad input, a bad store or a bad option can raise is a ``MefeatError``
subclass whose message names the file or sample and says what to do. The CLI prints the
message on one line and exits non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations


class MefeatError(Exception):
    """Base class of every error that a user can cause and fix."""


class AnnotationError(MefeatError):
    """An annotation file is missing, of the wrong version, or has a bad cell."""


class DatasetLayoutError(MefeatError):
    """A dataset folder does not have the layout its reader expects."""


class SampleError(MefeatError):
    """One sample cannot be processed (bad frames, bad key frames, no face...).

    The pipeline records it against the sample and goes on with the others.
    """

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.reason = message


class FaceNotFoundError(SampleError):
    """No face (or more than one) was found in a clip's onset frame."""


class StoreError(MefeatError):
    """A feature store is missing, of another schema or made with other settings."""


class ModelError(MefeatError):
    """An unknown model, a bad model option or an unreadable checkpoint."""
