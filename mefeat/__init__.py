"""mefeat: micro-expression recognition from raw dataset folders to LOSO benchmarks."""

__version__ = "0.1.0"
