"""The model layer: one way to call any model, with the token-level detail strategies need.

Example:
    >>> from forkpath.models import get_model, GenerateRequest, Message
    >>> model = get_model("local/smollm2-135m")
    >>> result = await model.generate(
    ...     GenerateRequest(messages=[Message(role="user", content="2+2?")], top_logprobs=5)
    ... )
"""

from forkpath.models._base import (
    GenerationCache,
    Model,
    RetryPolicy,
    TokenModel,
    check_capabilities,
    require_shared_tokenizer,
)
from forkpath.models._constrained import constrained
from forkpath.models._constraints import Constraint
from forkpath.models._fake import FakeModel
from forkpath.models._local import BundledModel, bundled_models, model_path, model_present, pull_model
from forkpath.models._resolve import (
    SAMPLER_FIELDS,
    Backend,
    FakeOptions,
    LiteLLMOptions,
    LlamaCppOptions,
    ModelOptions,
    backend_for,
    backends,
    check_model,
    get_model,
    prepare_model,
    static_capabilities,
)
from forkpath.models._sampling import Sampling, choose_token, draw_token, sample_rng, sampling_distribution
from forkpath.models._tokens import charge, teacher_force, token_model
from forkpath.models._tool_calls import parse_tool_calls
from forkpath.models._types import (
    GenerateChunk,
    GenerateRequest,
    GenerateResult,
    Message,
    ModelCapabilities,
    TokenInfo,
    ToolCall,
    ToolSpec,
    TopLogprob,
    Usage,
    replayed_wall_s,
)
from forkpath.models._uncertainty import entropy, entropy_lower, entropy_renorm, log_softmax, top1_margin
from forkpath.models._usage import UsageMeter, record_tool_call, record_usage, usage_meter

__all__ = [
    "SAMPLER_FIELDS",
    "Backend",
    "BundledModel",
    "Constraint",
    "FakeModel",
    "FakeOptions",
    "GenerateChunk",
    "GenerateRequest",
    "GenerateResult",
    "GenerationCache",
    "LiteLLMOptions",
    "LlamaCppOptions",
    "Message",
    "Model",
    "ModelCapabilities",
    "ModelOptions",
    "RetryPolicy",
    "Sampling",
    "TokenInfo",
    "TokenModel",
    "ToolCall",
    "ToolSpec",
    "TopLogprob",
    "Usage",
    "UsageMeter",
    "backend_for",
    "backends",
    "bundled_models",
    "charge",
    "check_capabilities",
    "check_model",
    "choose_token",
    "constrained",
    "draw_token",
    "entropy",
    "entropy_lower",
    "entropy_renorm",
    "get_model",
    "log_softmax",
    "model_path",
    "model_present",
    "parse_tool_calls",
    "prepare_model",
    "pull_model",
    "record_tool_call",
    "record_usage",
    "replayed_wall_s",
    "require_shared_tokenizer",
    "sample_rng",
    "sampling_distribution",
    "static_capabilities",
    "teacher_force",
    "token_model",
    "top1_margin",
    "usage_meter",
]
