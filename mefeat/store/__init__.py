"""The Zarr v3 feature store (layout in DESIGN.md).

One store holds one dataset's samples, their aligned frames and any number of feature
variants. Writes are per sample and a sample counts only once its ``done`` flag is set, so
a killed extraction leaves nothing half-written that a reader would believe. Only this
package opens the store's groups and arrays: ``layout`` (schema, columns, maps,
fingerprints), ``lock`` (one writer), ``feature_store`` (the store), ``variant`` (a variant's
arrays, a clip's frames), ``export`` (HDF5).
"""

from .feature_store import FeatureStore
from .layout import (
    MAPS,
    SCHEMA_VERSION,
    annotations_fingerprint,
    cast_maps,
    config_diff,
    fingerprint,
    variant_name,
)
from .variant import ClipReader, Variant

__all__ = ["MAPS", "SCHEMA_VERSION", "ClipReader", "FeatureStore", "Variant",
           "annotations_fingerprint", "cast_maps", "config_diff", "fingerprint", "variant_name"]
