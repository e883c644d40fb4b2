"""What a request's ``model`` names, and the validated job a request becomes.

``model`` is read in this order:

1. the ``name:`` of a flow the server loaded;
2. ``STRATEGY:MODEL`` or ``STRATEGY:ROLE=MODEL,ROLE=MODEL``: a registered strategy (its name is
   an identifier: letters, digits and ``_``, never ``/`` or ``-``) over one model for every role,
   or one model per role (``cascade:small=local/smollm2-135m,large=openai/gpt-4o-mini``). Only
   the first ``:`` separates, so model names may contain ``:``; a role list starts with
   ``identifier=``, which no model string does;
3. anything else: a model string, answered by that model alone.

Every model must be allowed by the server (``--allow-model`` patterns; by default the bundled
local models, the fake model and the models of the loaded flows). Everything a request says is
checked here, before it queues: a bad one is a :class:`ConfigError` naming its field path.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from pydantic import BaseModel, ValidationError

from forkpath import BudgetLimits, Task
from forkpath._errors import CapabilityError, ConfigError, UnknownNameError
from forkpath.flows import Flow
from forkpath.models import (
    SAMPLER_FIELDS,
    GenerateRequest,
    GenerationCache,
    Message,
    Model,
    ModelCapabilities,
    check_capabilities,
    check_model,
    get_model,
    prepare_model,
)
from forkpath.server._errors import validation_problem
from forkpath.server._schema import ChatRequest, CompletionRequest, ForkpathOptions, unsupported_fields
from forkpath.strategies import Strategy, strategies

DEFAULT_ALLOWED = ("local/*", "fake/*")
_STRATEGY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):(.+)$", re.DOTALL)
_ROLE_LIST = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_ROLE_SPLIT = re.compile(r",(?=[A-Za-z_][A-Za-z0-9_]*=)")

Endpoint = Literal["chat", "completions"]
TargetKind = Literal["flow", "strategy", "model"]


class ModelPool:
    """The models that strategy and model targets run on: made once, shared by every request
    (so a backend's concurrency limit holds across requests).

    Args:
        allow: glob patterns of model strings requests may name.
        also: exact model strings allowed besides (the loaded flows' models).
        cache: the generation cache every model of the pool uses (None: no cache).
    """

    def __init__(
        self,
        allow: Sequence[str],
        *,
        also: Sequence[str] = (),
        options: Mapping[str, dict[str, Any]] | None = None,
        cache: GenerationCache | None = None,
    ) -> None:
        self.allow = tuple(allow)
        self.options = dict(options or {})
        """Backend options per model string (``api_base``, ``n_ctx``, ``batch_invariant``, ...)."""
        self.also = frozenset(also) | frozenset(self.options)
        self.cache = cache
        self._models: dict[str, Model] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._checked: dict[str, ModelCapabilities] = {}

    def allowed(self, model_id: str) -> bool:
        return model_id in self.also or any(fnmatch.fnmatchcase(model_id, p) for p in self.allow)

    def check(self, model_id: str, *, what: str) -> ModelCapabilities:
        """Whether ``model_id`` may be used and what it can do (nothing is loaded)."""
        if not self.allowed(model_id):
            raise UnknownNameError(
                f"{what} {model_id!r} is not served here (allowed: {', '.join(self.describe())}); "
                "a model is added with forkpath serve --allow-model PATTERN",
                where="model",
            )
        if model_id not in self._checked:
            try:
                self._checked[model_id] = check_model(model_id, self.options.get(model_id))
            except UnknownNameError as e:
                raise UnknownNameError(str(e), where="model") from None
            except ConfigError as e:
                raise ConfigError(str(e), where="model") from None
        return self._checked[model_id]

    def describe(self) -> list[str]:
        return [*self.allow, *sorted(self.also)]

    async def get(self, model_id: str) -> Model:
        """The pool's model ``model_id``, made on first use (off the event loop: loading a
        local model takes a while)."""
        if model_id in self._models:
            return self._models[model_id]
        lock = self._locks.setdefault(model_id, asyncio.Lock())
        async with lock:
            if model_id not in self._models:
                options = self.options.get(model_id, {})
                prepare_model(model_id, options)
                self._models[model_id] = await asyncio.to_thread(
                    get_model, model_id, cache=self.cache, **options
                )
        return self._models[model_id]

    @property
    def loaded(self) -> dict[str, Model]:
        return dict(self._models)

    async def aclose(self) -> None:
        for model in self._models.values():
            await model.aclose()
        self._models.clear()


@dataclass
class Job:
    """One validated request, ready to run."""

    endpoint: Endpoint
    requested: str
    """The ``model`` as the client wrote it (echoed in the response)."""
    kind: TargetKind
    options: ForkpathOptions
    stream: bool = False
    include_usage: bool = False
    task: Task | None = None
    """The task a flow or strategy works on."""
    flow: Flow | None = None
    strategy: Strategy | None = None
    roles: dict[str, str] = field(default_factory=dict)
    """Strategy role -> model string."""
    verifier: Any = None
    budget: BudgetLimits | None = None
    model_id: str | None = None
    requests: list[GenerateRequest] = field(default_factory=list)
    """Model targets: one request per choice, in choice order."""
    logprobs: bool = False
    """Return per-token logprobs (model targets)."""


@dataclass
class ServedFlows:
    """The flows loaded at start, by name."""

    flows: Mapping[str, Flow]
    stores: Mapping[str, Any] = field(default_factory=dict)
    """Flow name -> its open store (flows with a ``store:`` block), shared by its runs."""


def parse_target(name: str, flows: Mapping[str, Flow]) -> tuple[TargetKind, str, dict[str, str]]:
    """``(kind, strategy or flow or model, roles)`` for a request's ``model``."""
    if name in flows:
        return "flow", name, {}
    match = _STRATEGY.match(name)
    if match is None:
        return "model", name, {}
    strategy, rest = match.groups()
    if not _ROLE_LIST.match(rest):
        return "strategy", strategy, {"*": rest}
    roles: dict[str, str] = {}
    for part in _ROLE_SPLIT.split(rest):
        role, _, model = part.partition("=")
        if not model:
            raise ConfigError(f"role {role!r} names no model (write ROLE=MODEL)", where="model")
        if role in roles:
            raise ConfigError(f"role {role!r} is given twice", where="model")
        roles[role] = model
    return "strategy", strategy, roles


class Planner:
    """Turns request bodies into :class:`Job` s, refusing what cannot be served."""

    def __init__(self, flows: ServedFlows, pool: ModelPool, *, max_tokens: int, timeout_s: float) -> None:
        self.flows = flows
        self.pool = pool
        self.default_max_tokens = max_tokens
        self.timeout_s = timeout_s
        self._params_models: dict[str, type[BaseModel]] = {}

    # -- bodies --------------------------------------------------------------------------------
    def chat(self, data: Any) -> Job:
        body = _parse(ChatRequest, data)
        self._refuse_unsupported(body)
        messages = tuple(
            Message(role="system" if m.role == "developer" else m.role, content=m.text) for m in body.messages
        )
        job = self._job("chat", body)
        max_tokens = body.max_completion_tokens or body.max_tokens
        if body.max_tokens and body.max_completion_tokens and body.max_tokens != body.max_completion_tokens:
            raise ConfigError("max_tokens and max_completion_tokens differ; give one", where="max_tokens")
        logprobs = bool(body.logprobs) or bool(body.top_logprobs)
        if body.top_logprobs and not body.logprobs:
            raise ConfigError("top_logprobs needs logprobs: true", where="top_logprobs")
        if job.kind == "model":
            self._model_requests(
                job, body, max_tokens, logprobs, body.top_logprobs or 0, [{"messages": messages}]
            )
            return job
        self._no_sampling_fields(job, body, logprobs, "logprobs")
        if messages[-1].role != "user":
            raise ConfigError(
                f"a {job.kind} answers the last user message; the last message is from the {messages[-1].role}",
                where=f"messages[{len(messages) - 1}].role",
            )
        conversation = [m.model_dump() for m in messages] if len(messages) > 1 else None
        job.task = self._task(body.forkpath, messages[-1].content, conversation)
        self._plan_target(job, body, max_tokens)
        return job

    def completion(self, data: Any) -> Job:
        body = _parse(CompletionRequest, data)
        self._refuse_unsupported(body)
        job = self._job("completions", body)
        prompts = body.prompts
        if not prompts:
            raise ConfigError("give at least one prompt", where="prompt")
        logprobs = body.logprobs is not None
        if job.kind == "model":
            self._model_requests(
                job,
                body,
                body.max_tokens or 16,
                logprobs,
                body.logprobs or 0,
                [{"prompt": p} for p in prompts],
            )
            return job
        self._no_sampling_fields(job, body, logprobs, "logprobs")
        if len(prompts) != 1:
            raise ConfigError(
                f"a {job.kind} answers one prompt per request, got {len(prompts)}", where="prompt"
            )
        job.task = self._task(body.forkpath, prompts[0], None)
        self._plan_target(job, body, body.max_tokens)
        return job

    # -- pieces --------------------------------------------------------------------------------
    def _job(self, endpoint: Endpoint, body: ChatRequest | CompletionRequest) -> Job:
        kind, _, _ = parse_target(body.model, self.flows.flows)
        options = body.forkpath
        timeout = self.timeout_s
        if options.timeout_s is not None:
            if options.timeout_s > self.timeout_s:
                raise ConfigError(
                    f"at most the server's limit, {self.timeout_s:g} s", where="forkpath.timeout_s"
                )
            timeout = options.timeout_s
        options.timeout_s = timeout
        if body.stream_options is not None and not body.stream:
            raise ConfigError("stream_options needs stream: true", where="stream_options")
        return Job(
            endpoint=endpoint,
            requested=body.model,
            kind=kind,
            options=options,
            stream=body.stream,
            include_usage=bool(body.stream_options and body.stream_options.include_usage),
        )

    @staticmethod
    def _refuse_unsupported(body: ChatRequest | CompletionRequest) -> None:
        for name, why in unsupported_fields(body):
            raise ConfigError(why, where=name)

    def _model_requests(
        self,
        job: Job,
        body: ChatRequest | CompletionRequest,
        max_tokens: int | None,
        logprobs: bool,
        top_logprobs: int,
        inputs: list[dict[str, Any]],
    ) -> None:
        options = body.forkpath
        for name in ("params", "verifier", "task", "budget"):
            if name in options.model_fields_set:
                raise ConfigError(
                    f"applies to strategies and flows; {body.model!r} is a model (use STRATEGY:{body.model})",
                    where=f"forkpath.{name}",
                )
        caps = self.pool.check(body.model, what="model")
        if top_logprobs > caps.top_logprobs:
            raise CapabilityError(
                f"model {body.model} returns at most {caps.top_logprobs} top logprobs per token",
                where="top_logprobs" if job.endpoint == "chat" else "logprobs",
            )
        if logprobs and not caps.logprobs:
            raise CapabilityError(f"model {body.model} does not return token logprobs", where="logprobs")
        temperature = 1.0 if body.temperature is None else body.temperature
        seed = body.seed
        if seed is None and temperature > 0:
            seed = secrets.randbelow(2**31)  # without a seed every request samples afresh, as OpenAI's
        n = body.n or 1
        job.model_id = body.model
        job.logprobs = logprobs
        # only the sampler fields the body gives: the others keep the model's `sampling` defaults
        # a plain model target takes every sampler field of the body (flows and strategies sample
        # with their own settings: they refuse all but top_p, which a strategy target reads)
        sampler = {name: getattr(body, name) for name in SAMPLER_FIELDS if getattr(body, name) is not None}
        for given in inputs:
            for i in range(n):
                try:
                    request = GenerateRequest(
                        **given,
                        **sampler,
                        max_tokens=max_tokens or self.default_max_tokens,
                        temperature=temperature,
                        stop=body.stops,
                        seed=seed,
                        sample_index=i,
                        logprobs=logprobs,
                        top_logprobs=top_logprobs,
                    )
                except ValidationError as e:
                    raise validation_problem(e) from None
                if request.is_continuation and request.messages is not None and not caps.prefix_continuation:
                    raise CapabilityError(
                        f"model {body.model} cannot continue a partial assistant message",
                        where=f"messages[{len(request.messages) - 1}].role",
                    )
                job.requests.append(request)

    @staticmethod
    def _no_sampling_fields(
        job: Job, body: ChatRequest | CompletionRequest, logprobs: bool, lp_name: str
    ) -> None:
        what = f"flow {body.model!r}" if job.kind == "flow" else f"strategy target {body.model!r}"
        if body.n not in (None, 1):
            raise ConfigError(
                f"{what} returns one chosen answer; for more samples set the strategy's own parameter "
                "(e.g. forkpath.params.n for best_of_n)",
                where="n",
            )
        if logprobs:
            raise ConfigError(
                f"{what} returns a chosen answer, not one model's token logprobs", where=lp_name
            )
        for name in ("stop", *SAMPLER_FIELDS[1:]):
            if getattr(body, name) is not None:
                raise ConfigError(
                    f"{what} cannot honour {name}; it is honoured by plain model targets", where=name
                )

    def _task(self, options: ForkpathOptions, prompt: str, conversation: list[dict[str, Any]] | None) -> Task:
        fields = options.task.model_dump() if options.task is not None else {"id": "request"}
        metadata = {"messages": conversation} if conversation else {}
        return Task(prompt=prompt, metadata=metadata, **fields)

    def _plan_target(self, job: Job, body: ChatRequest | CompletionRequest, max_tokens: int | None) -> None:
        options = body.forkpath
        if job.kind == "flow":
            flow = self.flows.flows[body.model]
            for name in ("params", "verifier"):
                if name in options.model_fields_set:
                    raise ConfigError(
                        f"flow {flow.spec.name!r} fixes its own {name} in its file", where=f"forkpath.{name}"
                    )
            for name, value in (
                ("temperature", body.temperature),
                ("top_p", body.top_p),
                ("seed", body.seed),
                ("max_tokens", max_tokens),
            ):
                if value is not None:
                    raise ConfigError(
                        f"flow {flow.spec.name!r} sets its nodes' {name} in its file; remove it "
                        "(limit a flow with forkpath.budget)",
                        where=name,
                    )
            job.flow = flow
            job.budget = _stricter(flow.spec.budget, options.budget)
            return
        self._plan_strategy(job, body, max_tokens)

    def _plan_strategy(self, job: Job, body: ChatRequest | CompletionRequest, max_tokens: int | None) -> None:
        options = body.forkpath
        _, name, roles = parse_target(body.model, self.flows.flows)
        try:
            strategies.get(name)
        except UnknownNameError as e:
            raise UnknownNameError(
                f"{body.model!r} is not a loaded flow, and {e}; a model name with ':' keeps its provider "
                "prefix (openai/..., ollama/...)",
                where="model",
            ) from None
        params_model = self._params_model(name)
        moved = strategies.moved(name)
        # A parameter that moved (temperature -> step.temperature) has no flat meaning any more.
        accepted = [field for field in params_model.model_fields if field not in moved]
        params = dict(options.params)
        mapped = {
            "temperature": body.temperature,
            "top_p": body.top_p,
            "max_tokens": max_tokens,
            "seed": body.seed,
        }
        for field_name, value in mapped.items():
            if value is None:
                continue
            if field_name not in accepted:
                raise ConfigError(
                    f"strategy {name} has no {field_name} parameter (its parameters: {', '.join(accepted)})",
                    where=field_name,
                )
            if field_name in params and params[field_name] != value:
                raise ConfigError(
                    f"{field_name}={value!r} and forkpath.params.{field_name}={params[field_name]!r} differ; give one",
                    where=field_name,
                )
            params[field_name] = value
        if "seed" in accepted and "seed" not in params:
            params["seed"] = secrets.randbelow(2**31)  # without a seed every request samples afresh
        try:
            validated = params_model.model_validate(params)
        except ValidationError as e:
            raise validation_problem(e, prefix="forkpath.params") from None
        try:
            # The registered factory records its name and these arguments, as create() would.
            strategy = strategies.get(name)(**{k: getattr(validated, k) for k in params})
        except ConfigError as e:
            raise ConfigError(str(e), where="forkpath.params") from None
        job.strategy = strategy
        job.roles = self._roles(strategy, roles)
        for role, model_id in job.roles.items():
            caps = self.pool.check(model_id, what=f"model of role {role}")
            if role in strategy.needs:
                try:
                    check_capabilities(caps, strategy.needs[role], model_id=model_id, by=strategy.name)
                except CapabilityError as e:
                    raise CapabilityError(str(e), where="model") from None
        if options.verifier is not None:
            job.verifier = _make_verifier(options.verifier)
        elif strategy.needs_verifier:
            raise ConfigError(
                f'strategy {name} needs a verifier: give forkpath.verifier (e.g. "python_tests" with '
                f"forkpath.task tests, or a judge){_without_verifier(params_model, validated)}",
                where="forkpath.verifier",
            )
        job.budget = options.budget

    def _params_model(self, name: str) -> type[BaseModel]:
        """The pydantic model of a strategy's parameters, built once per name (building one
        costs milliseconds: too much to repeat on every request)."""
        if name not in self._params_models:
            self._params_models[name] = strategies.params_model(name)
        return self._params_models[name]

    @staticmethod
    def _roles(strategy: Strategy, given: dict[str, str]) -> dict[str, str]:
        needed = set(strategy.needs) or {"default"}
        if "*" in given:
            return {role: given["*"] for role in needed | {"default"}}
        unknown = sorted(set(given) - needed - {"default"})
        if unknown:
            raise ConfigError(
                f"strategy {strategy.name} has no role {unknown[0]!r} (its roles: {', '.join(sorted(needed))})",
                where="model",
            )
        missing = sorted(needed - set(given))
        if missing:
            example = ",".join(f"{r}=MODEL" for r in sorted(needed))
            raise ConfigError(
                f"strategy {strategy.name} needs a model for role {missing[0]!r} ({strategy.name}:{example})",
                where="model",
            )
        return dict(given)


def _parse(kind: type[ChatRequest] | type[CompletionRequest], data: Any) -> Any:
    if not isinstance(data, dict):
        raise ConfigError("the request body must be a JSON object")
    try:
        return kind.model_validate(data)
    except ValidationError as e:
        raise validation_problem(e) from None


def _without_verifier(params_model: type[BaseModel], validated: BaseModel, prefix: str = "") -> str:
    """How to run the strategy without a verifier: the parameter set to ``verifier`` and its
    other choices (``", or set forkpath.params.rerank to 'mean_logprob'"``, or in a group:
    ``forkpath.params.value.kind``), when there is one."""
    for name, info in params_model.model_fields.items():
        value = getattr(validated, name)
        if isinstance(value, BaseModel):
            inner = _without_verifier(type(value), value, f"{prefix}{name}.")
            if inner:
                return inner
        elif value == "verifier":
            others = [repr(c) for c in get_args(info.annotation) if isinstance(c, str) and c != "verifier"]
            if others:
                return f", or set forkpath.params.{prefix}{name} to {' or '.join(others)}"
    return ""


def _make_verifier(spec: str | dict[str, Any]) -> Any:
    from forkpath.verifiers import make_verifier, verifiers

    name = spec if isinstance(spec, str) else spec.get("name")
    if isinstance(spec, dict) and isinstance(name, str):
        params = {k: v for k, v in spec.items() if k != "name"}
        try:
            verifiers.get(name)
            verifiers.params_model(name).model_validate(params)
        except UnknownNameError as e:
            raise ConfigError(str(e), where="forkpath.verifier.name") from None
        except ValidationError as e:
            raise validation_problem(e, prefix="forkpath.verifier") from None
    try:
        return make_verifier(spec)
    except ConfigError as e:
        raise ConfigError(str(e), where="forkpath.verifier") from None


def _stricter(a: BudgetLimits, b: BudgetLimits | None) -> BudgetLimits:
    if b is None:
        return a
    merged = {}
    for name in BudgetLimits.model_fields:
        values = [v for v in (getattr(a, name), getattr(b, name)) if v is not None]
        merged[name] = min(values) if values else None
    return BudgetLimits(**merged)
