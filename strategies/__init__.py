"""forkpath.strategies."""
