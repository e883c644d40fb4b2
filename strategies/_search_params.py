"""The parameter groups the three searches share: ``step:``, ``value:`` and ``sharing:``.

``mcts``, ``beam_search`` and ``token_tree_search`` take their many settings as a few nested
models instead of 20+ flat arguments, written the same way in YAML, in Python and in a server
request's ``forkpath.params``::

    strategy: mcts
    params:
      max_simulations: 16
      step: {kind: statement, expansion_width: 3, max_depth: 12}
      value: {kind: verifier, max_tokens: 256}
      sharing: {namespace: humaneval-run-1}

    strategies.mcts(step=StepParams(kind="statement"), value=ValueParams(max_tokens=256))

Every group is a pydantic model with ``extra="forbid"`` and the range types of
:mod:`forkpath._params`, so a wrong value is a ``file:line`` error when a flow is validated,
not a crash in a run. A flat key of the old signature (``max_depth``) is refused with its new
place (``step.max_depth``): :data:`STEP_SEARCH_MOVED`, :data:`TOKEN_SEARCH_MOVED`.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from forkpath._errors import ConfigError
from forkpath._params import Count, Float, Probability, Seconds, Temperature, Tokens
from forkpath.strategies._search_steps import StepKind, StepSplitter
from forkpath.strategies._search_stepwise import ExpandMode
from forkpath.strategies._search_values import ValueKind

BranchAt = Literal["auto", "token", "line", "uncertain"]

M = TypeVar("M", bound=BaseModel)

Positive = Annotated[Float, Field(gt=0.0)]
"""A finite number above 0 (``var_p_uct``'s ``c_base``)."""


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepParams(_Group):
    """How ``mcts`` and ``beam_search`` cut an answer into steps and draft the next ones."""

    kind: StepKind = "line"
    """Where a step ends: ``line``, ``paragraph``, ``statement`` (a Python logical line) or
    ``regex``."""
    pattern: str | None = None
    """The regular expression of ``kind: regex``: a step ends after a match."""
    max_tokens: Tokens = 96
    """Most tokens of one step."""
    expand: ExpandMode = "sample"
    """``sample``: ``expansion_width`` sampled steps; ``top_k``: the greedy step and the steps
    that start with the other top-k first tokens."""
    expansion_width: Count = 3
    """Children drafted per expanded node."""
    temperature: Temperature = 0.8
    """Sampling temperature of ``sample`` expansion."""
    max_depth: Count = 24
    """Steps below the root; deeper nodes are evaluated, never expanded."""

    @model_validator(mode="after")
    def _coherent(self) -> StepParams:
        try:
            StepSplitter(self.kind, self.pattern)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        if self.expand == "sample" and self.temperature <= 0 and self.expansion_width > 1:
            raise ValueError("sampled expansion needs step.temperature > 0 (greedy samples are all alike)")
        return self


class TokenStepParams(_Group):
    """Where ``token_tree_search`` branches, and how widely."""

    top_k: Count = 3
    """Children per expanded node: the top-k tokens at its branch point."""
    branch_at: BranchAt = "auto"
    """At every ``token`` (PG-TD), at the first token of each ``line``, where the model is
    ``uncertain``, or ``auto`` (``token`` on a local model, ``line`` over an API)."""
    uncertainty: Probability = 0.9
    """``uncertain`` branches where the top-1 probability is below this."""

    @field_validator("uncertainty")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("uncertainty must be in (0, 1]")
        return value


class ValueParams(_Group):
    """How a node is scored: by default, completed greedily (a rollout) and verified."""

    kind: ValueKind = "verifier"
    """``verifier`` (greedy rollout, verifier score), ``self_eval`` (the model's P(yes) that
    the partial answer is on track) or ``prm`` (a process reward model's P(yes))."""
    model: str | None = None
    """The model role of ``self_eval``/``prm`` (default: the search's model / ``prm``)."""
    prompt: str | None = None
    """The judge's prompt, with ``{problem}`` and ``{partial}``."""
    max_tokens: Tokens = 512
    """Most tokens of a rollout (of the whole answer, in ``token_tree_search``)."""

    @field_validator("prompt")
    @classmethod
    def _judge_prompt(cls, prompt: str | None) -> str | None:
        if prompt is None:
            return None
        try:
            fields = {field for _, field, _, _ in string.Formatter().parse(prompt) if field is not None}
        except ValueError as e:
            raise ValueError(f"{e} (write {{{{ and }}}} for literal braces)") from None
        unknown = sorted(fields - {"problem", "partial"})
        if unknown:
            raise ValueError(
                f"the judge's prompt may use only {{problem}} and {{partial}}, not {{{unknown[0]}}}"
            )
        return prompt

    @model_validator(mode="after")
    def _judge_only(self) -> ValueParams:
        if self.kind == "verifier" and (self.model is not None or self.prompt is not None):
            given = "value.model" if self.model is not None else "value.prompt"
            raise ValueError(
                f"{given} is for a judge (kind: self_eval or prm); kind verifier uses the verifier"
            )
        return self


class TokenValueParams(ValueParams):
    """``token_tree_search`` scores a node by its rollout's tests only."""

    kind: Literal["verifier"] = "verifier"
    """Always ``verifier``: the fraction of tests the rollout's program passes."""


class SharingParams(_Group):
    """How a search keeps and shares its tree in the store."""

    namespace: str | None = None
    """The store namespace of the tree (default: derived from the task, the model and the
    settings, so a rerun resumes the same tree and workers share it)."""
    worker: str | None = None
    """This worker's id in claims (default: host, pid and a random suffix)."""
    claim_ttl_s: Seconds = 30.0
    """How long a crashed worker's claim blocks others."""
    reuse: bool = True
    """The trajectory cache: evaluate (and, over tokens, expand) a child that lies on a known
    rollout from that rollout, with no model call."""


def _regrouped(group: str, value: Any) -> str:
    return f"`{group}` is a group of settings now: write `{group}: {{kind: {value}}}`"


def _not_a_kind(group: str) -> BeforeValidator:
    """Refuse the old flat form (``step: statement``, ``value: prm``) with the new one."""

    def check(value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(_regrouped(group, value))
        return value

    return BeforeValidator(check)


Step = Annotated[StepParams, _not_a_kind("step")]
Value = Annotated[ValueParams, _not_a_kind("value")]
TokenStep = Annotated[TokenStepParams, _not_a_kind("step")]
TokenValue = Annotated[TokenValueParams, _not_a_kind("value")]


def moved(groups: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """Old flat key -> new place, from ``{group: {old key: field}}``."""
    return {old: f"{group}.{field}" for group, fields in groups.items() for old, field in fields.items()}


_SHARING = {"namespace": "namespace", "worker": "worker", "claim_ttl_s": "claim_ttl_s", "reuse": "reuse"}
STEP_SEARCH_MOVED = moved(
    {
        "step": {
            "step_pattern": "pattern",
            "max_step_tokens": "max_tokens",
            "expand": "expand",
            "expansion_width": "expansion_width",
            "temperature": "temperature",
            "max_depth": "max_depth",
        },
        "value": {"value_model": "model", "value_prompt": "prompt", "max_tokens": "max_tokens"},
        "sharing": _SHARING,
    }
)
"""The flat keys ``mcts`` and ``beam_search`` took before the groups, and where each went."""
TOKEN_SEARCH_MOVED = moved(
    {
        "step": {"top_k": "top_k", "branch_at": "branch_at", "uncertainty": "uncertainty"},
        "value": {"max_tokens": "max_tokens"},
        "sharing": _SHARING,
    }
)
"""The flat keys ``token_tree_search`` took before the groups, and where each went."""


def group(kind: type[M], given: M | Mapping[str, Any] | None, name: str) -> M:
    """``given`` as a ``kind`` (a mapping is validated; None is the defaults); a problem is
    one :class:`ConfigError` naming ``name``."""
    if isinstance(given, kind):
        return given
    if given is None:
        return kind()
    if isinstance(given, str):
        raise ConfigError(_regrouped(name, given))
    if isinstance(given, BaseModel):  # another group's model: read it as its fields
        given = given.model_dump(exclude_unset=True)
    if not isinstance(given, Mapping):
        raise ConfigError(f"{name}: expected a mapping of {kind.__name__} fields, got {given!r:.100}")
    try:
        return kind.model_validate(dict(given))
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in (name, *err["loc"]))
        raise ConfigError(f"{where}: {err['msg'].removeprefix('Value error, ')}") from None
