"""The model layer: one way to call any model, with the token-level detail strategies need.

Example:
    >>> from forkpath.models import get_model, GenerateRequest, Message
    >>> model = get_model("local/smollm2-135m")
    >>> result = await model.generate(
    ...     GenerateRequest(messages=[Message(role="user", content="2+2?")], top_logprobs=5)
    ... )
"""

from forkpath.models._base import GenerationCache, Model, RetryPolicy, TokenModel, require_shared_tokenizer
from forkpath.models._fake import FakeModel
from forkpath.models._resolve import backends, get_model
from forkpath.models._types import (
    GenerateRequest,
    GenerateResult,
    Message,
    ModelCapabilities,
    TokenInfo,
    TopLogprob,
    Usage,
)
from forkpath.models._uncertainty import entropy, entropy_lower, entropy_renorm, log_softmax, top1_margin
from forkpath.models._usage import UsageMeter, usage_meter

__all__ = [
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
]
