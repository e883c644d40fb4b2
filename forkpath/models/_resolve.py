"""From a model string to a :class:`Model`: one :class:`Backend` object per backend prefix.

A model string starts with a backend prefix when forkpath knows it, else it goes to litellm:

- ``local/<name>``: a bundled GGUF model (``local/smollm2-135m``, ...), run in-process;
- ``llamacpp/<path.gguf>``: any GGUF file, run in-process;
- ``fake/<name>``: the deterministic fake model for tests;
- anything else (``openai/gpt-4o-mini``, ``anthropic/...``, ``hosted_vllm/...``, ``ollama/...``):
  the litellm backend.

A backend is one object: its pydantic ``options`` model (what YAML's ``options:`` may say,
``extra="forbid"``), what a model can do without loading it (for validating a flow before a
run), any process-wide preparation, and how to make the model. A third-party backend registers
a :class:`Backend` under its prefix in the entry-point group ``forkpath.models``; it is then
validated and created exactly like the built-in ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from forkpath._errors import ConfigError
from forkpath._registry import Registry
from forkpath.models._base import GenerationCache, Model, RetryPolicy
from forkpath.models._types import GenerateRequest, ModelCapabilities

SAMPLER_FIELDS = ("top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty")
"""The fields of :class:`GenerateRequest` that shape the sampler (besides its temperature)."""


def _unset(name: str) -> Any:
    """``GenerateRequest``'s field ``name``, optional: its type and bounds, default None."""
    info = GenerateRequest.model_fields[name]
    return (
        Annotated[info.annotation, *info.metadata] | None,
        Field(default=None, description=info.description),
    )


SamplingDefaults = create_model(
    "SamplingDefaults",
    __config__=ConfigDict(extra="forbid"),
    __doc__="""The sampler settings a model applies to every request that does not set them itself:
    the settings a server would apply by default (llama.cpp's server: top-k 40, top-p 0.95,
    min-p 0.05, repeat penalty 1.1), made explicit and the same in-process and over HTTP.
    Unset, a request keeps forkpath's defaults (the model's own distribution: all off). The
    fields, their types and bounds are :class:`GenerateRequest`'s.""",
    **{name: _unset(name) for name in SAMPLER_FIELDS},
)


class ModelOptions(BaseModel):
    """Options every backend takes (a backend's own options model extends this)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    max_concurrency: int | None = Field(default=None, ge=1)
    """Calls in flight at once through this model (default: the backend's)."""
    retry: RetryPolicy | None = None
    """How transient failures are retried (default: 4 attempts, exponential backoff)."""
    capabilities: ModelCapabilities | None = None
    """What the model can return, when the backend's own account is wrong (an endpoint that
    returns fewer logprobs than its provider usually does; a test model that lacks one)."""
    sampling: SamplingDefaults | None = None  # type: ignore[valid-type]
    """Sampler settings for every request that does not set its own (``top_k``, ``min_p``,
    ``repetition_penalty``, ...; a strategy's ``temperature`` stays the strategy's)."""


class LlamaCppOptions(ModelOptions):
    """Options of in-process GGUF models (``local/...``, ``llamacpp/...``)."""

    n_ctx: int = Field(default=4096, ge=16, le=1_048_576)
    """Context size in tokens."""
    n_threads: int | None = Field(default=None, ge=1, le=1024)
    """CPU threads (default: all cores)."""
    tokenizer_id: str | None = None
    """Vocabulary identity (default: the bundled model's, or the file's tokenizer and size)."""
    batch_invariant: bool = False
    """Load so that a token's logits are the same bits alone or in a batch (see the README)."""
    n_seq_max: int = Field(default=16, ge=1, le=256)
    """Sequences the engine decodes together in one batch (samples, concurrent calls)."""
    kv_cells: int | None = Field(default=None, ge=16, le=4_194_304)
    """KV cache cells shared by those sequences (default: twice ``n_ctx``); a call waits for
    cells rather than failing half-way."""
    flash_attn: bool = True
    """llama.cpp's flash-attention kernels (always on with ``batch_invariant``): faster decoding
    and prefill here, except for many sequences sharing a long prompt (``docs/benchmarks.md``)."""


class LiteLLMOptions(ModelOptions):
    """Options of API models reached through litellm."""

    api_base: str | None = None
    """Server URL for self-hosted endpoints (vLLM, llama.cpp, Ollama, any OpenAI-compatible server)."""
    api_key: str | None = None
    """Key; by default litellm reads the provider's environment variable."""
    timeout_s: float = Field(default=120.0, gt=0)
    """Per-call timeout."""
    samples_in_one_request: bool | None = None
    """Ask for a ``generate_n``'s samples as the ``n`` choices of one request (default: where
    litellm says the provider takes ``n``; a server that returns fewer choices gets separate
    requests)."""


class FakeOptions(ModelOptions):
    """Options of the deterministic fake model (tests and examples)."""

    script: dict[str, list[str]] | None = None
    """Prompt substring -> answers (sample ``i`` gets answer ``i mod len``)."""
    default: str = "I do not know."
    confidence: float = Field(default=0.9, gt=0.0, le=1.0)
    tokenizer_id: str = "fake-ascii"
    latency_s: float = Field(default=0.0, ge=0.0)
    token_latency_s: float = Field(default=0.0, ge=0.0)
    fail_on: dict[str, str] | None = None


class AgentOptions(ModelOptions):
    """Options of ``agent/<model>``: an agent loop over a model that calls tools."""

    tools: list[str | dict[str, Any]] = Field(default_factory=list)
    """Tools by name (``python``, ``calculator``), with parameters (``{name: python, timeout_s:
    5}``), or MCP servers (``{mcp: {command: ..., args: [...]}}``)."""
    system: str | None = None
    """System message of the agent (used when a request has none)."""
    max_steps: int = Field(default=8, ge=1, le=100)
    """Most model calls per answer."""
    first_tool_choice: str = "auto"
    """The first step's ``tool_choice``: ``auto``, ``required`` or a tool's name."""
    model_options: dict[str, Any] = Field(default_factory=dict)
    """Options of the inner model."""


FULL_ACCESS: dict[str, Any] = {
    "logprobs": True,
    "top_logprobs": 100,  # the llama.cpp backend's MAX_TOP_LOGPROBS, without importing llama.cpp
    "full_distribution": True,
    "prefix_continuation": True,
    "prompt_scoring": True,
}


@dataclass(frozen=True)
class Backend:
    """How model strings with one prefix become models.

    Args:
        prefix: the model string's first segment (``local``, ``llamacpp``, ``fake``, ...).
        options: the pydantic model of the options YAML and ``get_model`` may give.
        create: ``(model_id, options) -> Model``.
        capabilities: ``(model_id, options) -> ModelCapabilities``, known without loading anything.
        prepare: process-wide setup before any model of the process computes (may be None).
    """

    prefix: str
    options: type[ModelOptions]
    create: Callable[[str, Any, GenerationCache | None], Model]
    capabilities: Callable[[str, Any], ModelCapabilities]
    prepare: Callable[[str, Any], None] | None = None

    def __call__(self, model_id: str, *, cache: GenerationCache | None = None, **options: Any) -> Model:
        """The model ``model_id`` with ``options`` (validated first)."""
        parsed = self.parse_options(model_id, options)
        model = self.create(model_id, parsed, cache)
        if parsed.capabilities is not None:
            model.capabilities = parsed.capabilities
        if parsed.sampling is not None:
            model.sampling_defaults = parsed.sampling.model_dump(exclude_none=True)
        return model

    def static_capabilities(self, model_id: str, options: ModelOptions) -> ModelCapabilities:
        """What the model can do, known without loading it (the ``capabilities`` option wins)."""
        return options.capabilities or self.capabilities(model_id, options)

    def parse_options(self, model_id: str, options: dict[str, Any]) -> ModelOptions:
        """``options`` validated against :attr:`options`; a :class:`ConfigError` names the field."""
        try:
            return self.options.model_validate(options)
        except ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "options"
            message = (
                "unknown option (check its spelling)" if first["type"] == "extra_forbidden" else first["msg"]
            )
            known = ", ".join(self.options.model_fields)
            raise ConfigError(
                f"model {model_id}: options.{field}: {message} (options of {self.prefix}: {known})"
            ) from None


def _create_fake(model_id: str, options: FakeOptions, cache: GenerationCache | None) -> Model:
    from forkpath.models._fake import FakeModel

    return FakeModel(model_id, cache=cache, **_given(options))


def _create_llamacpp(model_id: str, options: LlamaCppOptions, cache: GenerationCache | None) -> Model:
    from forkpath.models._llamacpp import LlamaCppModel

    prefix, _, rest = model_id.partition("/")
    kwargs = _given(options)
    path: str | Path = rest
    if prefix == "local":
        from forkpath.models import _local

        kwargs.setdefault("tokenizer_id", _local.bundled(rest).tokenizer_id)
        path = _local.resolve(rest)
    return LlamaCppModel(model_id, path, cache=cache, **kwargs)


def _create_litellm(model_id: str, options: LiteLLMOptions, cache: GenerationCache | None) -> Model:
    from forkpath.models._litellm import LiteLLMModel

    return LiteLLMModel(model_id.removeprefix("litellm/"), cache=cache, **_given(options))


def _given(options: ModelOptions) -> dict[str, Any]:
    """The options that were set (unset ones keep the model class's own defaults), except
    ``capabilities`` and ``sampling``, which :class:`Backend` applies to any model."""
    return {
        name: getattr(options, name)
        for name in options.model_fields_set
        if name not in ("capabilities", "sampling")
    }


def _llamacpp_capabilities(model_id: str, options: LlamaCppOptions) -> ModelCapabilities:
    prefix, _, rest = model_id.partition("/")
    tokenizer = options.tokenizer_id
    tools = False  # a GGUF file's template is known once it is loaded; bundled ones say so here
    if prefix == "local":
        from forkpath.models import _local

        info = _local.bundled(rest)
        tokenizer = tokenizer or info.tokenizer_id
        tools = info.tool_calls
    return ModelCapabilities(
        **FULL_ACCESS, batch_invariant=options.batch_invariant, tokenizer_id=tokenizer, tool_calls=tools
    )


def _fake_capabilities(model_id: str, options: FakeOptions) -> ModelCapabilities:
    return ModelCapabilities(
        **{**FULL_ACCESS, "top_logprobs": 20, "batch_invariant": True, "tool_calls": True},
        tokenizer_id=options.tokenizer_id,
    )


def _litellm_capabilities(model_id: str, options: LiteLLMOptions) -> ModelCapabilities:
    from forkpath.models._litellm import capabilities_for

    sampling = options.sampling.model_dump(exclude_none=True) if options.sampling else None
    return capabilities_for(model_id.removeprefix("litellm/"), options.api_base, sampling)


def _create_agent(model_id: str, options: AgentOptions, cache: GenerationCache | None) -> Model:
    from forkpath.tools import make_agent_model

    return make_agent_model(model_id, options, cache)


def _agent_capabilities(model_id: str, options: AgentOptions) -> ModelCapabilities:
    inner = model_id.split("/", 1)[1] if "/" in model_id else ""
    if not inner:
        raise ConfigError(
            f"an agent model is agent/<model>, e.g. agent/local/qwen2.5-coder-0.5b; got {model_id!r}"
        )
    caps = check_model(inner, options.model_options)
    if not caps.tool_calls:
        raise ConfigError(f"{model_id}: model {inner} cannot call tools, so it cannot be an agent")
    from forkpath.tools import check_tool_refs

    check_tool_refs(options.tools)
    return ModelCapabilities(n_ctx=caps.n_ctx)


def _prepare_llamacpp(model_id: str, options: LlamaCppOptions) -> None:
    if options.batch_invariant:
        from forkpath.models._llamacpp import reserve_batch_invariance

        reserve_batch_invariance()


backends: Registry[Model] = Registry("models", noun="model backend")
"""Model backends by prefix (entry-point group ``forkpath.models`` for plugins)."""

_BUILTIN = (
    Backend("fake", FakeOptions, _create_fake, _fake_capabilities),
    Backend("local", LlamaCppOptions, _create_llamacpp, _llamacpp_capabilities, _prepare_llamacpp),
    Backend("llamacpp", LlamaCppOptions, _create_llamacpp, _llamacpp_capabilities, _prepare_llamacpp),
    Backend("litellm", LiteLLMOptions, _create_litellm, _litellm_capabilities),
    Backend("agent", AgentOptions, _create_agent, _agent_capabilities),
)
for _backend in _BUILTIN:
    backends.register(_backend.prefix)(_backend)


def backend_for(model_id: str) -> Backend:
    """The backend that serves ``model_id``: the one registered under its prefix, else litellm."""
    if not isinstance(model_id, str) or not model_id.strip():
        raise ConfigError(f"a model is a non-empty string such as local/smollm2-135m, got {model_id!r}")
    prefix = model_id.split("/", 1)[0] if "/" in model_id else ""
    name = prefix if prefix and prefix in backends.names() else "litellm"
    backend: Any = backends.get(name)
    if not isinstance(backend, Backend):
        raise ConfigError(f"the models entry point {name!r} is not a forkpath.models.Backend")
    return backend


def check_model(model_id: str, options: dict[str, Any] | None = None) -> ModelCapabilities:
    """Validate ``model_id`` and its ``options`` and return what it can do, without loading it
    (for validating flows before a run). Raises :class:`ConfigError` naming the problem."""
    backend = backend_for(model_id)
    return backend.static_capabilities(model_id, backend.parse_options(model_id, options or {}))


def static_capabilities(model_id: str, options: dict[str, Any] | None = None) -> ModelCapabilities:
    """What ``model_id`` can do, known without loading it (same as :func:`check_model`)."""
    return check_model(model_id, options)


def prepare_model(model_id: str, options: dict[str, Any] | None = None) -> None:
    """Process-wide setup ``model_id`` needs before any model of the process computes; a run
    calls it for all its models first (a ``batch_invariant`` llama.cpp model needs llama.cpp's
    tiled matmul off, which llama.cpp reads once per process)."""
    backend = backend_for(model_id)
    if backend.prepare is not None:
        backend.prepare(model_id, backend.parse_options(model_id, options or {}))


def get_model(model_id: str, *, cache: GenerationCache | None = None, **options: Any) -> Model:
    """Create the model named by ``model_id`` with backend ``options``.

    Example:
        >>> model = get_model("local/smollm2-135m", n_ctx=2048)
        >>> model = get_model("openai/qwen", api_base="http://127.0.0.1:8000/v1")
    """
    return backend_for(model_id)(model_id, cache=cache, **options)
