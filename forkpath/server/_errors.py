"""forkpath's errors as OpenAI-style HTTP errors, with secrets taken out of every message.

The body is OpenAI's: ``{"error": {"message", "type", "param", "code"}}``; ``param`` names the
field path of the problem (``forkpath.params.n``, ``messages[0].role``) where one is known. Bad
input is a 4xx; a failing model provider a 502/503/504; only a bug is a 500, and its message
says no more than that (the traceback goes to the server log).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from forkpath._errors import (
    AuthenticationError,
    CapabilityError,
    ConfigError,
    ContextWindowError,
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
)

log = logging.getLogger("forkpath.server")

_SECRET_NAMES = re.compile(r"(API_KEY|_TOKEN|_SECRET|PASSWORD)$")


class Redactor:
    """Replaces known secrets (the server's key, provider keys in the environment, keys in
    model options) with ``***`` in text that leaves the server."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        found = {v for k, v in os.environ.items() if _SECRET_NAMES.search(k) and len(v) >= 8}
        found |= {s for s in secrets or [] if s and len(s) >= 4}
        self._secrets = sorted(found, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


@dataclass(frozen=True)
class Problem:
    """One error response: status, OpenAI type and code, message, the field it is about."""

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] | None = None

    def body(self, redact: Redactor) -> dict[str, Any]:
        return {
            "error": {
                "message": redact(self.message),
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """A pydantic location as a path: ``("messages", 0, "role")`` -> ``messages[0].role``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def validation_problem(error: ValidationError, *, prefix: str = "") -> ConfigError:
    """The first problem of a pydantic error, as a :class:`ConfigError` at its field path."""
    first = error.errors()[0]
    loc = [p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    # Union members show up as a location part ("str", "list[TextPart]"): not part of the path.
    loc = [p for p in loc if not (isinstance(p, str) and ("[" in p or p in {"str", "int", "float", "bool"}))]
    path = ".".join(x for x in (prefix, field_path(loc)) if x)
    if first["type"] == "extra_forbidden":
        message = "unknown field (check its spelling)"
    elif first["type"] == "missing":
        message = "field required"
    else:
        message = first["msg"]
    return ConfigError(message, where=path or None)


def problem_for(error: BaseException) -> Problem:
    """The HTTP error for an exception raised while serving a request."""
    message = str(error)
    param = getattr(error, "where", None)
    if isinstance(error, ModelNotFoundError) or (isinstance(error, UnknownNameError) and param == "model"):
        return Problem(404, message, code="model_not_found", param="model")
    if isinstance(error, CapabilityError):
        return Problem(400, message, code="capability_missing", param=param)
    if isinstance(error, ConfigError):
        return Problem(400, message, param=param)
    if isinstance(error, ContextWindowError):
        return Problem(400, message, code="context_length_exceeded")
    if isinstance(error, RateLimitError):
        return Problem(
            429,
            f"the model provider is rate limiting: {message}",
            "rate_limit_error",
            "upstream_rate_limit",
            headers={"Retry-After": "5"},
        )
    if isinstance(error, AuthenticationError):
        return Problem(
            502,
            f"the model provider refused the server's credentials: {message}",
            "api_error",
            "upstream_authentication_error",
        )
    if isinstance(error, ModelUnavailableError):
        return Problem(503, message, "api_error", "model_unavailable")
    if isinstance(error, ModelTimeoutError):
        return Problem(504, message, "timeout_error", "upstream_timeout")
    if isinstance(error, ServerError):
        return Problem(502, f"the model provider failed: {message}", "api_error", "upstream_error")
    if isinstance(error, ModelError):
        # The provider rejected what forkpath sent (BadRequestError and the rest): the request's fault.
        return Problem(400, message, code="model_error")
    if isinstance(error, VerifierError):
        return Problem(503, f"the verifier could not run: {message}", "api_error", "verifier_error")
    if isinstance(error, StoreError):
        return Problem(503, f"the store failed: {message}", "api_error", "store_error")
    if isinstance(error, ForkpathError):
        return Problem(500, message, "server_error", "flow_error")
    if isinstance(error, TimeoutError):
        return Problem(504, message or "the request timed out", "timeout_error", "timeout")
    log.exception("internal error while serving a request", exc_info=error)
    return Problem(
        500, "internal server error (the server log has the details)", "server_error", "internal_error"
    )
