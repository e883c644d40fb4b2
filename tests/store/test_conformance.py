"""The conformance suite on every backend: SQLite and a real Redis (see conftest's ``store``)."""

from __future__ import annotations

from .conformance import StoreConformance


class TestStoreConformance(StoreConformance):
    """Runs each conformance test once per backend in the ``store`` fixture's params."""
