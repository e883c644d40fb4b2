"""forkpath.flows."""
