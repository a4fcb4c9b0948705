"""The Zarr v3 feature store (layout in DESIGN.md).

One store holds one dataset's samples, their aligned frames and any number of feature
variants. Writes are per sample and a sample counts only once its ``done`` flag is set, so
a killed extraction leaves nothing half-written that a reader would believe.
"""

from .feature_store import (
    SCHEMA_VERSION,
    FeatureStore,
    Variant,
    annotations_fingerprint,
    fingerprint,
)

__all__ = ["SCHEMA_VERSION", "FeatureStore", "Variant", "annotations_fingerprint",
           "fingerprint"]
