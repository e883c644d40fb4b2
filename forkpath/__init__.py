"""forkpath: inference-time meta-generation.

The core package holds models, types, errors, the registry, budgets, datasets and the CLI; the
roles live in subpackages: ``forkpath.strategies``, ``forkpath.routers``,
``forkpath.verifiers``, ``forkpath.store`` and ``forkpath.flows``. Importing forkpath is cheap:
each public name (listed in ``__init__.pyi``) is imported on first use, and provider SDKs load
when a model first needs them.
"""

import lazy_loader as _lazy

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
__all__ = [*__all__, "__version__"]
