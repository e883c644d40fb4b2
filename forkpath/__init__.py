"""forkpath: inference-time meta-generation.

The core package holds models, types, errors and the registry; the roles live in subpackages:
``forkpath.strategies``, ``forkpath.routers``, ``forkpath.verifiers``, ``forkpath.store`` and
``forkpath.flows``. Importing forkpath is cheap: provider SDKs load when first used.
"""

from forkpath._errors import (
    AuthenticationError,
    BadRequestError,
    CapabilityError,
    ConfigError,
    ContextWindowError,
    FlowError,
    ForkpathError,
    ModelError,
    ModelNotFoundError,
    ModelTimeoutError,
    ModelUnavailableError,
    RateLimitError,
    ServerError,
    StoreError,
    UnknownNameError,
    VerifierError,
    is_retryable,
)
from forkpath._registry import Registered, Registry
from forkpath._types import IOCase, Task
from forkpath.models import (
    GenerateRequest,
    GenerateResult,
    Message,
    Model,
    ModelCapabilities,
    Usage,
    get_model,
)

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "CapabilityError",
    "ConfigError",
    "ContextWindowError",
    "FlowError",
    "ForkpathError",
    "GenerateRequest",
    "GenerateResult",
    "IOCase",
    "Message",
    "Model",
    "ModelCapabilities",
    "ModelError",
    "ModelNotFoundError",
    "ModelTimeoutError",
    "ModelUnavailableError",
    "RateLimitError",
    "Registered",
    "Registry",
    "ServerError",
    "StoreError",
    "Task",
    "UnknownNameError",
    "Usage",
    "VerifierError",
    "__version__",
    "get_model",
    "is_retryable",
]
