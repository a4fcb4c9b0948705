"""mefeat.report."""
