"""mefeat.views."""
