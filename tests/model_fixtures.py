"""Session-scoped detector fixtures (filled in with the detector work)."""
