"""Value sources of a step-level search: what a partial answer is worth.

- ``verifier``: complete the partial answer greedily (a rollout) and take the verifier's score
  of the result (the fraction of tests passed); the rollout is kept, so the search can return
  it and reuse it.
- ``self_eval``: ask the searching model whether the partial answer is on track and take its
  P(yes) (the yes/no probabilities of its first word, from top logprobs).
- ``prm``: the same question put to a process reward model reached through the model layer
  (a context model role, ``prm`` by default), with its own prompt.

A complete answer (a terminal node) is scored by the verifier when there is one, else by the
judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from forkpath._errors import ConfigError
from forkpath._trace import VerdictEvent, emit
from forkpath._types import Task
from forkpath.models import GenerateRequest, Message, Model
from forkpath.strategies._search import OutOfBudget, SearchCounters
from forkpath.strategies._search_steps import StepWriter

ValueKind = Literal["verifier", "self_eval", "prm"]

SELF_EVAL_PROMPT = (
    "Problem:\n{problem}\n\nPartial solution so far:\n{partial}\n\n"
    "Is the partial solution correct and on track to solve the problem? Answer Yes or No."
)
"""Default judge prompt; ``{problem}`` is the task prompt and ``{partial}`` the answer so far."""


@dataclass
class Evaluation:
    """What a value source concluded about one node."""

    value: float
    """In [0, 1]."""
    answer: str | None = None
    """The complete answer the value rests on (a rollout, or the node itself), if any."""
    passed: bool | None = None
    verdict: dict[str, Any] | None = None
    completion: str = ""
    """What the rollout added after the partial answer."""
    first_top: list[list[Any]] = field(default_factory=list)
    """``[token, logprob]`` alternatives at the rollout's first token."""
    token_logprobs: list[list[Any]] | None = None
    """``[token, logprob]`` of each token of the rollout (priors of the greedy next step)."""

    def record(self, **extra: Any) -> dict[str, Any]:
        """The JSON kept on the node in the store."""
        return {
            "answer": self.answer,
            "passed": self.passed,
            "verdict": self.verdict,
            "completion": self.completion,
            "first_top": self.first_top,
            "token_logprobs": self.token_logprobs,
            **extra,
        }


class ValueSource(Protocol):
    """Scores partial and complete answers."""

    async def partial(self, text: str) -> Evaluation: ...

    async def complete(self, text: str) -> Evaluation: ...


class Verification:
    """The verifier with a reward cache (an answer is verified once per run) and trace events."""

    def __init__(self, verifier: Any, task: Task, counters: SearchCounters) -> None:
        self.verifier = verifier
        self.task = task
        self.counters = counters
        self._cache: dict[str, Evaluation] = {}

    async def __call__(self, answer: str) -> Evaluation:
        cached = self._cache.get(answer)
        if cached is not None:
            return Evaluation(cached.value, answer, cached.passed, cached.verdict)
        verdict = await self.verifier.verify(self.task, answer)
        self.counters.verifications += 1
        data = verdict.model_dump(mode="json") if isinstance(verdict, BaseModel) else None
        evaluation = Evaluation(float(verdict.score), answer, bool(verdict.passed), data)
        self._cache[answer] = evaluation
        emit(
            VerdictEvent(
                verifier=type(self.verifier).__name__,
                passed=bool(verdict.passed),
                score=float(verdict.score),
                candidate_index=self.counters.verifications - 1,
            )
        )
        return evaluation


class RolloutValue:
    """The verifier's score of the greedy completion of a partial answer.

    Args:
        writer: completes partial answers.
        verify: the verifier (with its reward cache).
        max_tokens: most tokens of a rollout.
        top_logprobs: alternatives to keep at the rollout's first token (for top-k expansion).
    """

    def __init__(self, writer: StepWriter, verify: Verification, *, max_tokens: int, top_logprobs: int = 0):
        self.writer = writer
        self.verify = verify
        self.max_tokens = max_tokens
        self.top_logprobs = top_logprobs

    async def partial(self, text: str) -> Evaluation:
        result = await self.writer.complete(text, max_tokens=self.max_tokens, top_logprobs=self.top_logprobs)
        evaluation = await self.verify(text + result.text)
        evaluation.completion = result.text
        if result.tokens:
            evaluation.first_top = [[t.token, t.logprob] for t in result.tokens[0].top]
            if all(t.logprob is not None for t in result.tokens):
                evaluation.token_logprobs = [[t.token, t.logprob] for t in result.tokens]
        return evaluation

    async def complete(self, text: str) -> Evaluation:
        return await self.verify(text)


class JudgeValue:
    """A model's P(yes) that the partial answer is on track (self-evaluation or a PRM).

    Args:
        judge: the model asked.
        task: the task (its prompt fills ``{problem}``).
        counters: where calls are counted.
        budget_left: returns False when no further call may be made.
        prompt: the question, with ``{problem}`` and ``{partial}``.
        verify: scores complete answers when a verifier is given (else the judge does).
    """

    def __init__(
        self,
        judge: Model,
        task: Task,
        counters: SearchCounters,
        budget_left: Any,
        *,
        prompt: str | None = None,
        verify: Verification | None = None,
    ) -> None:
        self.judge = judge
        self.task = task
        self.counters = counters
        self.budget_left = budget_left
        self.prompt = prompt or SELF_EVAL_PROMPT
        self.verify = verify
        try:
            self.prompt.format(problem="", partial="")
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(
                f"value.prompt may use only {{problem}} and {{partial}} (double other braces): {e}"
            ) from None

    async def partial(self, text: str) -> Evaluation:
        if not self.budget_left():
            raise OutOfBudget
        from forkpath.verifiers import parse_score, yes_probability

        request = GenerateRequest(
            messages=(
                Message(role="user", content=self.prompt.format(problem=self.task.prompt, partial=text)),
            ),
            max_tokens=4,
            temperature=0.0,
            top_logprobs=min(10, self.judge.capabilities.top_logprobs),
            logprobs=self.judge.capabilities.logprobs,
        )
        result = await self.judge.generate(request)
        self.counters.count_call(result.cached)
        p = yes_probability(result.tokens) if result.tokens else None
        if p is None:
            p = parse_score(result.text)
        return Evaluation(value=float(p) if p is not None else 0.0)

    async def complete(self, text: str) -> Evaluation:
        if self.verify is not None:
            return await self.verify(text)
        evaluation = await self.partial(text)
        evaluation.answer = text
        return evaluation
