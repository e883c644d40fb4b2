"""cothink: an instruct model outlines, a reasoning model solves with the outline (arXiv 2505.22017).

The instruct model writes 2–4 high-level steps (what to do, not how: no numbers, no answer);
the reasoning model solves the problem with the outline as guidance. A wrong outline anchors
the solver, so an outline that states numbers absent from the problem (a computed result) is
drawn again, up to ``outline_retries`` times (the last draw is kept, and ``info`` says so).

Token accounting: ``info`` has the outline's and the solution's tokens and their total; with
``baseline=True`` the reasoning model also solves the problem alone (same settings), and
``info`` adds its tokens and the relative saving, ``1 - cothink / alone``. The baseline's answer
is a second candidate, never the chosen one.
"""

from __future__ import annotations

import re

from forkpath._answer import generate_answer
from forkpath._params import CountOrZero, Temperature, Tokens
from forkpath._prompts import PromptTemplate, task_messages
from forkpath._types import Task
from forkpath.models import GenerateRequest, GenerateResult, Message, ModelCapabilities
from forkpath.strategies._base import Candidate, Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._helpers import budget_reached, verify_into

OUTLINE_SYSTEM = (
    "You are a reasoning strategist. Break the problem into 2 to 4 high-level steps. Say what must be "
    "done at each step, not how to compute it. Do not include calculations, numbers, formulas or the answer."
)
OUTLINE_USER = "Problem:\n{prompt}\n\nGive only the high-level steps."
SOLVE_SUFFIX = (
    "\n\nHere is a high-level outline of a solution:\n{outline}\n\n"
    "Use it as guidance and reason step by step."
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def leaked_numbers(outline: str, problem: str) -> list[str]:
    """Numbers in the outline that the problem does not contain (step numbers excepted)."""
    stated = set(_NUMBER.findall(problem))
    body = re.sub(r"(?m)^\s*(?:step\s*)?\d+\s*[.):]", "", outline, flags=re.IGNORECASE)
    return sorted({n for n in _NUMBER.findall(body) if n not in stated})


def _tokens(result: GenerateResult) -> int:
    return result.usage.prompt_tokens + result.usage.completion_tokens


@strategies.register("cothink")
def cothink(
    instruct: str = "instruct",
    reasoning: str = "reasoning",
    outline_tokens: Tokens = 192,
    max_tokens: Tokens = 1024,
    outline_temperature: Temperature = 0.2,
    temperature: Temperature = 0.0,
    outline_retries: CountOrZero = 1,
    baseline: bool = False,
    prompt: PromptTemplate | None = None,
) -> Strategy:
    """Outline with ``instruct``, solve with ``reasoning``.

    Args:
        instruct: the context's role of the instruct (outline) model.
        reasoning: the context's role of the reasoning (solving) model.
        outline_tokens: most tokens of the outline.
        max_tokens: most tokens of the solution.
        outline_temperature: temperature of the outline (low: it should be plain).
        temperature: temperature of the solution.
        outline_retries: redraws of an outline that states numbers absent from the problem.
        baseline: also let the reasoning model solve alone, and report the token saving.
        prompt: a template for the user message of the solver (the outline is appended).
    """
    roles = {instruct: ModelCapabilities(), reasoning: ModelCapabilities()}

    async def run(task: Task, context: Context) -> StrategyResult:
        planner, solver = context.model(instruct), context.model(reasoning)
        stopped: Stopped = "done"
        outline = ""
        outline_usage = 0
        draws = 0
        leaks: list[str] = []
        for attempt in range(outline_retries + 1):
            if budget_reached(context):
                stopped = "budget"
                break
            drawn = await planner.generate(
                GenerateRequest(
                    messages=(
                        Message(role="system", content=OUTLINE_SYSTEM),
                        Message(role="user", content=OUTLINE_USER.format(prompt=task.prompt)),
                    ),
                    max_tokens=outline_tokens,
                    temperature=outline_temperature if attempt == 0 else max(outline_temperature, 0.7),
                    sample_index=attempt,
                )
            )
            draws += 1
            outline_usage += _tokens(drawn)
            outline = drawn.text.strip()
            leaks = leaked_numbers(outline, task.prompt)
            if not leaks:
                break
        candidates: list[Candidate] = []
        info: dict[str, object] = {"outline": outline, "outline_draws": draws, "outline_leaks": leaks}
        messages = list(task_messages(task, prompt))
        messages[-1] = Message(
            role="user", content=messages[-1].content + SOLVE_SUFFIX.format(outline=outline)
        )
        if outline and not budget_reached(context):
            solved = await generate_answer(
                solver,
                GenerateRequest(messages=tuple(messages), max_tokens=max_tokens, temperature=temperature),
            )
            candidates.append(Candidate(text=solved.text, model=solved.model))
            info.update(
                outline_tokens=outline_usage,
                solve_tokens=_tokens(solved),
                total_tokens=outline_usage + _tokens(solved),
                completion_tokens=solved.usage.completion_tokens,
            )
        else:
            stopped = "budget"
        if baseline and candidates and not budget_reached(context):
            alone = await solver.generate(
                GenerateRequest(
                    messages=task_messages(task, prompt), max_tokens=max_tokens, temperature=temperature
                )
            )
            candidates.append(Candidate(text=alone.text, model=alone.model))
            total = int(info["total_tokens"])  # type: ignore[call-overload]
            info.update(baseline_tokens=_tokens(alone), saving=1.0 - total / max(1, _tokens(alone)))
        chosen = 0 if candidates else None
        if context.verifier is not None:
            for i, candidate in enumerate(candidates):
                await verify_into(
                    context.verifier, task, candidate, i, detail="cothink" if i == 0 else "alone"
                )
        return StrategyResult(
            answer=candidates[0].text if candidates else None,
            chosen=chosen,
            candidates=candidates,
            stopped=stopped,
            info=info,
        )

    return Strategy(run, needs=roles)
