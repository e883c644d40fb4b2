"""self_refine: generate, get feedback, revise; bounded rounds; keep the best verified version.

Feedback comes from tests when there are tests to run: the failing tests with their error
messages (``feedback="verifier"``: the context's verifier; ``"examples"``: the public examples
of the task, see :mod:`._helpers`, so hidden tests stay hidden). Without tests, or with
``feedback="critique"``, a model critiques the answer and says ``CORRECT`` when it finds
nothing to fix. Each version is kept with its score; the result is the best one (highest test
score, the latest on ties, since a revision that scores the same was written with more
feedback), and the loop ends early when a version passes its tests or the critic approves it.

When the feedback tests are not the context's verifier, the context's verifier (if any) judges
only the returned version, which is reported in ``passed``.
"""

from __future__ import annotations

from typing import Any, Literal

from forkpath._params import CountOrZero, Temperature, Tokens
from forkpath._prompts import PromptTemplate, task_messages
from forkpath._types import Task
from forkpath.models import GenerateRequest, Message, ModelCapabilities
from forkpath.strategies._base import Candidate, Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._helpers import (
    ExamplesVerifier,
    best_index,
    budget_reached,
    failure_report,
    public_task,
    verifier_name,
    verify_into,
)

CRITIQUE = (
    "Review the answer above for mistakes. If it is fully correct, reply with the single word CORRECT. "
    "Otherwise list the concrete problems briefly, without writing a new answer."
)
REVISE_TESTS = (
    "Your answer fails these tests:\n{feedback}\n\n"
    "Fix the problems and give the complete corrected answer{code_hint}."
)
REVISE_CRITIQUE = (
    "A reviewer found these problems in your answer:\n{feedback}\n\n"
    "Fix them and give the complete corrected answer{code_hint}."
)
CODE_HINT = " as one ```python code block"


def approves(critique: str) -> bool:
    """Whether a critique says the answer needs no change."""
    head = critique.strip().strip("*").strip().upper()
    return head.startswith("CORRECT") or head.startswith("NO PROBLEMS") or head.startswith("NO ISSUES")


@strategies.register("self_refine")
def self_refine(
    model: str = "default",
    critic: str | None = None,
    max_rounds: CountOrZero = 3,
    feedback: Literal["verifier", "examples", "critique"] = "verifier",
    temperature: Temperature = 0.0,
    max_tokens: Tokens = 512,
    critique_tokens: Tokens = 256,
    prompt: PromptTemplate | None = None,
) -> Strategy:
    """Refine an answer with test feedback (or a model's critique) for up to ``max_rounds`` revisions.

    Args:
        model: the context's model role that writes and revises.
        critic: the role that critiques when there are no tests (default: ``model``).
        max_rounds: most revisions after the first answer.
        feedback: ``verifier``: failing tests of the context's verifier (falls back to a
            critique without one); ``examples``: failing public examples of the task (a
            critique when it has none); ``critique``: always a model critique.
        temperature: sampling temperature of answers and revisions (0: greedy).
        max_tokens: most tokens per answer.
        critique_tokens: most tokens per critique.
        prompt: a template for the user message.
    """

    async def run(task: Task, context: Context) -> StrategyResult:
        writer = context.model(model)
        reviewer = context.model(critic or model)
        tester: Any = None
        if feedback == "verifier":
            tester = context.verifier
        elif feedback == "examples" and public_task(task) is not None:
            tester = ExamplesVerifier()
        conversation = list(task_messages(task, prompt))
        code_hint = CODE_HINT if task.kind == "code" else ""
        candidates: list[Candidate] = []
        stopped: Stopped = "done"
        kinds: list[str] = []
        for round_ in range(max_rounds + 1):
            if budget_reached(context):
                stopped = "budget"
                break
            result = await writer.generate(
                GenerateRequest(
                    messages=tuple(conversation),
                    max_tokens=max_tokens,
                    temperature=temperature,
                    sample_index=round_,
                    logprobs=writer.capabilities.logprobs,
                )
            )
            candidate = Candidate(text=result.text, model=result.model, mean_logprob=result.mean_logprob)
            candidates.append(candidate)
            conversation.append(Message(role="assistant", content=result.text))
            if tester is not None:
                verdict = await verify_into(tester, task, candidate, round_, detail=f"round {round_}")
                if verdict.passed:
                    stopped = "early_stop"
                    break
                report = failure_report(verdict)
                if not report:
                    report = verdict.summary() if hasattr(verdict, "summary") else "the tests fail"
                revise = REVISE_TESTS.format(feedback=report, code_hint=code_hint)
                kind = "tests"
            else:
                if round_ == max_rounds or budget_reached(context):
                    stopped = "budget" if round_ < max_rounds else stopped
                    break
                critique = await reviewer.generate(
                    GenerateRequest(
                        messages=(*conversation, Message(role="user", content=CRITIQUE)),
                        max_tokens=critique_tokens,
                        temperature=0.0,
                    )
                )
                if approves(critique.text):
                    stopped = "early_stop"
                    candidate.score = 1.0
                    break
                candidate.score = 0.0
                revise = REVISE_CRITIQUE.format(feedback=critique.text.strip(), code_hint=code_hint)
                kind = "critique"
            if round_ == max_rounds:
                break
            kinds.append(kind)
            conversation.append(Message(role="user", content=revise))
        chosen = best_index(candidates, prefer_latest=True)
        if tester is None and chosen is not None and stopped != "early_stop":
            chosen = len(candidates) - 1  # no tests and no approval: the most revised version
        if context.verifier is not None and tester is not context.verifier and chosen is not None:
            await verify_into(
                context.verifier, task, candidates[chosen], chosen, detail="returned version", set_score=False
            )
        return StrategyResult(
            answer=candidates[chosen].text if chosen is not None else None,
            chosen=chosen,
            candidates=candidates,
            stopped=stopped,
            info={
                "versions": len(candidates),
                "feedback": kinds,
                "tester": verifier_name(tester) if tester is not None else "critique",
                "scores": [c.score for c in candidates],
            },
        )

    roles = {model: ModelCapabilities(), (critic or model): ModelCapabilities()}
    return Strategy(run, needs=roles)
