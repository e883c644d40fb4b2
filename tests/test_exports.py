"""The public API is what __all__ says, and nothing in it is missing."""

from __future__ import annotations

import forkpath
import forkpath.models


def test_forkpath_exports() -> None:
    assert set(forkpath.__all__) == {
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
    }
    for name in forkpath.__all__:
        assert hasattr(forkpath, name), name


def test_models_exports() -> None:
    assert set(forkpath.models.__all__) == {
        "FakeModel",
        "GenerateRequest",
        "GenerateResult",
        "GenerationCache",
        "Message",
        "Model",
        "ModelCapabilities",
        "RetryPolicy",
        "TokenInfo",
        "TokenModel",
        "TopLogprob",
        "Usage",
        "UsageMeter",
        "backends",
        "entropy",
        "entropy_lower",
        "entropy_renorm",
        "get_model",
        "log_softmax",
        "require_shared_tokenizer",
        "top1_margin",
        "usage_meter",
    }
    for name in forkpath.models.__all__:
        assert hasattr(forkpath.models, name), name


def test_import_is_cheap() -> None:
    import subprocess
    import sys

    code = (
        "import sys, forkpath, forkpath._cli; "
        "print(sorted(m for m in ('litellm', 'llama_cpp', 'langgraph') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
