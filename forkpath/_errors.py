"""The one error tree of forkpath.

Everything forkpath raises on purpose derives from :class:`ForkpathError`::

    ForkpathError
    ├── ConfigError                 bad configuration, found before anything runs
    │   ├── UnknownNameError        a registry name (model, strategy, verifier, ...) that does not exist
    │   └── CapabilityError         a component needs a model capability the model lacks
    ├── ModelError                  a model call failed
    │   ├── ModelNotFoundError      a GGUF file or bundled model that is not there / fails its hash
    │   ├── ModelUnavailableError   the server is down or unreachable (retryable)
    │   ├── ModelTimeoutError       the call took too long (retryable)
    │   ├── RateLimitError          429 from the provider (retryable)
    │   ├── ServerError             5xx from the provider (retryable)
    │   ├── AuthenticationError     401/403: wrong or missing key (never retried)
    │   ├── ContextWindowError      the prompt does not fit
    │   └── BadRequestError         any other 4xx: the request itself is wrong
    ├── VerifierError               a verifier could not run (not: a candidate failed its tests)
    ├── StoreError                  the store could not be read or written
    └── FlowError                   a flow failed while running

Control flow (prune, stop early, budget exhausted) is not an error: strategies return a result
that says so. Vendor exceptions are translated at the boundary with ``raise ... from e``;
:func:`is_retryable` is the single rule that drives retries.
"""

from __future__ import annotations


class ForkpathError(Exception):
    """Base class of every error forkpath raises on purpose."""


class ConfigError(ForkpathError):
    """Configuration is wrong; raised before any model call is made.

    Attributes:
        where: optional location, e.g. ``flows/x.yaml:12``, prefixed to the message.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class UnknownNameError(ConfigError):
    """A name that no registry knows."""


class CapabilityError(ConfigError):
    """A component needs a model capability that the model does not have."""


class ModelError(ForkpathError):
    """A model call failed. ``model`` names the model id when known."""

    retryable: bool = False

    def __init__(self, message: str, *, model: str | None = None) -> None:
        self.model = model
        super().__init__(f"{model}: {message}" if model else message)


class ModelNotFoundError(ModelError, ConfigError):
    """A model file or bundled model is missing or fails its checksum."""

    def __init__(self, message: str, *, model: str | None = None) -> None:
        ModelError.__init__(self, message, model=model)
        self.where = None


class ModelUnavailableError(ModelError):
    """The model server could not be reached."""

    retryable = True


class ModelTimeoutError(ModelError):
    """The model call timed out."""

    retryable = True


class RateLimitError(ModelError):
    """The provider asked us to slow down (HTTP 429)."""

    retryable = True


class ServerError(ModelError):
    """The provider failed (HTTP 5xx)."""

    retryable = True


class AuthenticationError(ModelError):
    """The provider refused our credentials (HTTP 401/403)."""


class ContextWindowError(ModelError):
    """The prompt plus requested tokens exceed the model's context window."""


class BadRequestError(ModelError):
    """The provider rejected the request as malformed (other HTTP 4xx)."""


class VerifierError(ForkpathError):
    """A verifier could not run at all (a failing candidate is a verdict, not an error)."""


class StoreError(ForkpathError):
    """The store could not be reached, read or written."""


class FlowError(ForkpathError):
    """A flow failed while running."""


def is_retryable(error: BaseException) -> bool:
    """Whether a failed call may succeed if tried again (the one rule retries follow)."""
    return isinstance(error, ModelError) and error.retryable
