"""A model as the verifier: for tasks without tests, ask a model whether the answer is right.

With token logprobs the verdict is the judge's probability of "yes" (its top alternatives at
the first word, renormalised over yes and no); without them, the model is asked for a score
from 0 to 10 and the number is parsed. Either way the verdict is marked untrusted.
"""

import math
import re
import time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from forkpath._errors import ConfigError
from forkpath._params import Int, Probability, Tokens
from forkpath._types import Task
from forkpath.models import GenerateRequest, Message, Model, TokenInfo, check_model, get_model
from forkpath.verifiers._registry import verifiers
from forkpath.verifiers._types import Reason, TestResult, Verdict

SYSTEM = "You are a careful, strict grader. You check whether a proposed answer solves the problem."
YES_NO = (
    "Problem:\n{problem}\n\nProposed answer:\n{answer}\n\n"
    "Is the proposed answer correct and complete? Answer with a single word: yes or no."
)
SCORE = (
    "Problem:\n{problem}\n\nProposed answer:\n{answer}\n\n"
    "How likely is the proposed answer to be correct? Give a score from 0 to 10, "
    "where 10 means certainly correct. Reply with the number only."
)
_WORD = re.compile(r"[a-z]+")
_SCORE = re.compile(r"-?\d+(?:\.\d+)?")


def resolve_model(model: str | Model) -> Model:
    """A model object from a model string or an existing model."""
    return get_model(model) if isinstance(model, str) else model


def _known_model(model: str | Model) -> str | Model:
    if isinstance(model, str):
        try:
            check_model(model)
        except ConfigError as e:
            raise ValueError(str(e)) from None
    return model


ModelRef = Annotated[str | Model, AfterValidator(_known_model)]
"""A verifier's model: a model string (checked when validated, loaded when made) or a model."""


def _word(token: str) -> str:
    match = _WORD.search(token.lower())
    return match.group(0) if match else ""


def yes_probability(tokens: list[TokenInfo]) -> float | None:
    """P(yes) / (P(yes) + P(no)) at the first word-like generated token, from its top logprobs.

    A token counts as yes (no) when its letters are a prefix of "yes" ("no"), so both "Yes"
    and a character-level "y" count. None when that position says neither.
    """
    for token in tokens:
        if not _word(token.token):
            continue  # leading whitespace, markdown, quotes
        if not token.top:
            if token.logprob is None:
                return None
            chosen, p = _word(token.token), math.exp(token.logprob)
            return p if "yes".startswith(chosen) else (1.0 - p if "no".startswith(chosen) else None)
        yes = no = 0.0
        for alternative in token.top:
            word = _word(alternative.token)
            if word and "yes".startswith(word):
                yes += math.exp(alternative.logprob)
            elif word and "no".startswith(word):
                no += math.exp(alternative.logprob)
        return yes / (yes + no) if yes + no > 0 else None
    return None


def parse_score(text: str, scale: float = 10.0) -> float | None:
    """A 0..scale score (or a bare yes/no) in a reply, as a value in [0, 1]."""
    match = _SCORE.search(text)
    if match:
        return min(max(float(match.group(0)) / scale, 0.0), 1.0)
    word = _word(text)
    if word in ("yes", "correct", "true"):
        return 1.0
    if word in ("no", "incorrect", "false", "wrong"):
        return 0.0
    return None


class ModelJudge:
    """Asks a model whether a candidate answers the task.

    Args:
        model: the judge.
        threshold: the smallest score that passes.
        use_logprobs: read P(yes) from top logprobs (None: when the model returns them).
        top_logprobs: alternatives to ask for per token (capped by the model's capability).
        max_tokens: reply budget.
    """

    def __init__(
        self,
        model: Model,
        *,
        threshold: float = 0.5,
        use_logprobs: bool | None = None,
        top_logprobs: int = 5,
        max_tokens: int = 8,
    ) -> None:
        self.model = model
        self.threshold = threshold
        self.use_logprobs = use_logprobs
        self.top_logprobs = top_logprobs
        self.max_tokens = max_tokens

    def _method(self) -> Literal["logprobs", "score"]:
        capable = self.model.capabilities.top_logprobs >= 2
        wanted = capable if self.use_logprobs is None else self.use_logprobs
        return "logprobs" if wanted and capable else "score"

    async def verify(self, task: Task, candidate: str) -> Verdict:
        started = time.perf_counter()
        method = self._method()
        template = YES_NO if method == "logprobs" else SCORE
        request = GenerateRequest(
            messages=(
                Message(role="system", content=SYSTEM),
                Message(role="user", content=template.format(problem=task.prompt, answer=candidate)),
            ),
            max_tokens=self.max_tokens,
            temperature=0.0,
            top_logprobs=min(self.top_logprobs, self.model.capabilities.top_logprobs)
            if method == "logprobs"
            else 0,
        )
        result = await self.model.generate(request)
        score = yes_probability(result.tokens) if method == "logprobs" else None
        if score is None:
            method, score = "score", parse_score(result.text)
        details: dict[str, Any] = {"model": self.model.id, "method": method, "reply": result.text[:200]}
        reason: Reason
        if score is None:
            passed, reason = False, "no_answer"
            message = f"could not read a verdict from {result.text[:80]!r}"
        else:
            passed = score >= self.threshold
            reason = "ok" if passed else "wrong_answer"
            message = f"P(yes) = {score:.3f}" if method == "logprobs" else f"score {score * 10:g}/10"
        duration = time.perf_counter() - started
        return Verdict(
            passed=passed,
            score=score or 0.0,
            tests=[
                TestResult(
                    name="model judge",
                    passed=passed,
                    reason=reason,
                    message=message,
                    duration_s=duration,
                    source="model",
                )
            ],
            verifier="model_judge",
            duration_s=duration,
            trusted=False,
            details=details,
        )


@verifiers.register("model_judge")
def model_judge(
    model: ModelRef,
    threshold: Probability = 0.5,
    use_logprobs: bool | None = None,
    top_logprobs: Annotated[Int, Field(ge=1, le=100)] = 5,
    max_tokens: Tokens = 8,
) -> ModelJudge:
    """Ask a model to judge the candidate (for tasks without tests); the verdict is untrusted.

    Args:
        model: model string (``local/...``, ``openai/...``) or a model object.
        threshold: smallest P(yes) or normalised score that passes.
        use_logprobs: None uses top logprobs when the model has them.
        top_logprobs: alternatives per token to request.
        max_tokens: reply budget.
    """
    return ModelJudge(
        resolve_model(model),
        threshold=threshold,
        use_logprobs=use_logprobs,
        top_logprobs=top_logprobs,
        max_tokens=max_tokens,
    )
