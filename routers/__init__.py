"""forkpath.routers."""
