"""mefeat.run."""
