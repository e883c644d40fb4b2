"""From a model string to a :class:`Model`: the ``models`` registry of backends.

A model string starts with a backend prefix when forkpath knows it, else it goes to litellm:

- ``local/<name>``: a bundled GGUF model (``local/smollm2-135m``, ...), run in-process;
- ``llamacpp/<path.gguf>``: any GGUF file, run in-process;
- ``fake/<name>``: the deterministic fake model for tests;
- anything else (``openai/gpt-4o-mini``, ``anthropic/...``, ``hosted_vllm/...``, ``ollama/...``):
  the litellm backend.

Third-party backends register a factory ``(model_id, **options) -> Model`` under a prefix in
the entry-point group ``forkpath.models``.
"""

from __future__ import annotations

from typing import Any

from forkpath._registry import Registry
from forkpath.models._base import Model
from forkpath.models._types import ModelCapabilities

backends: Registry[Model] = Registry("models")


@backends.register("fake")
def _fake(model_id: str, **options: Any) -> Model:
    from forkpath.models._fake import FakeModel

    return FakeModel(model_id, **options)


@backends.register("local")
def _local(model_id: str, **options: Any) -> Model:
    from forkpath.models import _local as local
    from forkpath.models._llamacpp import LlamaCppModel

    name = model_id.split("/", 1)[1]
    info = local.bundled(name)
    options.setdefault("tokenizer_id", info.tokenizer_id)
    return LlamaCppModel(model_id, local.resolve(name), **options)


@backends.register("llamacpp")
def _llamacpp(model_id: str, **options: Any) -> Model:
    from forkpath.models._llamacpp import LlamaCppModel

    return LlamaCppModel(model_id, model_id.split("/", 1)[1], **options)


@backends.register("litellm")
def _litellm(model_id: str, **options: Any) -> Model:
    from forkpath.models._litellm import LiteLLMModel

    if model_id.startswith("litellm/"):
        model_id = model_id.split("/", 1)[1]
    return LiteLLMModel(model_id, **options)


def static_capabilities(model_id: str, options: dict[str, Any] | None = None) -> ModelCapabilities:
    """What ``model_id`` can do, known without loading it (for validating flows before a run)."""
    options = options or {}
    given = options.get("capabilities")
    if given is not None:
        return ModelCapabilities.model_validate(given)
    prefix = model_id.split("/", 1)[0] if "/" in model_id else ""
    full: dict[str, Any] = {
        "logprobs": True,
        "top_logprobs": 100,  # _llamacpp.MAX_TOP_LOGPROBS, without importing llama.cpp
        "full_distribution": True,
        "prefix_continuation": True,
        "prompt_scoring": True,
    }
    if prefix in ("local", "llamacpp"):
        full["batch_invariant"] = bool(options.get("batch_invariant", False))
    if prefix == "local":
        from forkpath.models import _local

        return ModelCapabilities(**full, tokenizer_id=_local.bundled(model_id.split("/", 1)[1]).tokenizer_id)
    if prefix == "llamacpp":
        return ModelCapabilities(**full, tokenizer_id=options.get("tokenizer_id"))
    if prefix == "fake":
        return ModelCapabilities(
            **{**full, "top_logprobs": 20, "batch_invariant": True},
            tokenizer_id=options.get("tokenizer_id", "fake-ascii"),
        )
    from forkpath.models._litellm import capabilities_for

    return capabilities_for(model_id, options.get("api_base"))


def prepare_model(model_id: str, options: dict[str, Any]) -> None:
    """Process-wide setup ``model_id`` needs before any model of the process computes; a run
    calls it for all its models first. Today: a ``batch_invariant`` llama.cpp model needs
    llama.cpp's tiled matmul off (read once per process)."""
    prefix = model_id.split("/", 1)[0]
    if prefix in ("local", "llamacpp") and options.get("batch_invariant"):
        from forkpath.models._llamacpp import reserve_batch_invariance

        reserve_batch_invariance()


def get_model(model_id: str, **options: Any) -> Model:
    """Create the model named by ``model_id`` with backend ``options``.

    Example:
        >>> model = get_model("local/smollm2-135m", n_ctx=2048)
        >>> model = get_model("openai/qwen", api_base="http://127.0.0.1:8000/v1")
    """
    prefix = model_id.split("/", 1)[0] if "/" in model_id else ""
    if prefix and prefix != "litellm" and prefix in backends.names():
        return backends.get(prefix)(model_id, **options)
    return backends.get("litellm")(model_id, **options)
