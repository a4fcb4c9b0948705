"""mefeat: micro-expression recognition from raw dataset folders to LOSO benchmarks.

The API people type, at the top (imported on first use, so ``import mefeat`` stays light)::

    import mefeat
    data = mefeat.load_view("casme2.zarr", "ststnet")       # a model's view of a store
    res = mefeat.train_loso("ststnet", data, epochs=5)      # LOSO by the model's recipe
    net = mefeat.create_model("causalnet", num_classes=3)   # a registered network
"""

__version__ = "0.1.0"

_API = {"load_view": "mefeat.train", "train_loso": "mefeat.train",
        "create_model": "mefeat.models", "list_models": "mefeat.models"}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'mefeat' has no attribute {name!r}")
