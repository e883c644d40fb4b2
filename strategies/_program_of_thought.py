"""program_of_thought: the model writes a program, the sandbox runs it, its output is the answer.

Program-of-thought / program-aided reasoning (Chen et al. 2022; Gao et al. 2023, PAL): instead of
doing arithmetic in prose, a coder model writes a short Python program that computes the answer and
prints it; the program runs in the verifiers' sandbox (no network, resource and time limits) and
the last number it prints is the candidate answer. With ``n > 1`` the samples vote on their
outputs (self-consistency over programs): a program that crashes, times out or prints no number
abstains. It costs a fraction of the tokens of a chain of thought, which makes it a cheap first
stage for an escalating strategy.

Example:
    >>> pot = strategies.create("program_of_thought", n=5, temperature=0.7)
    >>> result = await pot(gsm8k_task, Context({"default": coder}, verifier=make_verifier("math_answer")))
"""

from __future__ import annotations

import re

from forkpath import gather_all
from forkpath._params import Count, Seconds, Seed, Temperature, Tokens
from forkpath._prompts import PromptTemplate
from forkpath._types import Task
from forkpath.models import GenerateRequest, GenerateResult, Message, ModelCapabilities, record_tool_call
from forkpath.strategies._base import Candidate, Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._helpers import budget_reached, verify_into
from forkpath.strategies._vote import Ballot, same_answer, tally

SYSTEM = "You are an expert Python programmer."
INSTRUCTION = (
    "Solve the following problem by writing a Python program. The program must compute the answer "
    "step by step with variables named after the quantities in the problem, and end by printing "
    "only the final answer as a number. Reply with one ```python code block and nothing else.\n\n"
    "Problem: {prompt}"
)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][+-]?\d+)?")


def printed_answer(stdout: str) -> str | None:
    """The answer a program printed: the last number of its output (thousands separators
    removed, a whole float such as ``42.0`` written as ``42``, binary floating-point noise such as
    ``29.999999999999996`` rounded to 12 significant digits: ``30``), or None if it printed none."""
    numbers = _NUMBER.findall(stdout)
    if not numbers:
        return None
    text = numbers[-1].replace(",", "")
    try:
        value = float(text)
    except ValueError:
        return None
    if "." in text and len(re.sub(r"\D", "", text).lstrip("0")) >= 16 and "e" not in text.lower():
        # 16-17 significant digits: how Python prints a float, not a number anyone meant
        text = format(float(format(value, ".12g")), ".12g")
        value = float(text)
    if value.is_integer() and abs(value) < 1e15 and "e" not in text.lower():
        return str(int(value))
    return text


@strategies.register("program_of_thought")
def program_of_thought(
    n: Count = 1,
    model: str = "default",
    temperature: Temperature = 0.0,
    max_tokens: Tokens = 400,
    timeout_s: Seconds = 10.0,
    seed: Seed = 0,
    prompt: PromptTemplate | None = None,
) -> Strategy:
    """Write a program, run it, answer with what it prints; with ``n > 1``, vote on the outputs.

    Args:
        n: programs to sample (1: greedy at ``temperature`` 0).
        model: the context's model role that writes programs.
        temperature: sampling temperature (use > 0 with ``n > 1``).
        max_tokens: most tokens per program.
        timeout_s: wall-clock limit of one program run.
        seed: base sampling seed.
        prompt: the instruction template (``{prompt}`` is the problem).
    """

    async def run(task: Task, context: Context) -> StrategyResult:
        from forkpath.verifiers import Limits, extract_code, run_program

        writer = context.model(model)
        question = (prompt or INSTRUCTION).format(**task.model_dump())
        base = GenerateRequest(
            messages=(Message(role="system", content=SYSTEM), Message(role="user", content=question)),
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            logprobs=writer.capabilities.logprobs,
        )
        limits = Limits(timeout_s=timeout_s)
        stopped: Stopped = "done"
        calls_left = context.budget.calls_left()
        planned = n if calls_left is None else min(n, calls_left)
        if planned < n:
            stopped = "budget"

        async def sample(i: int) -> tuple[GenerateResult, str, str | None]:
            result = await writer.generate(base.model_copy(update={"sample_index": i}))
            code = extract_code(result.text)
            ran = await run_program(code, "", limits=limits)
            record_tool_call(ran.duration_s)  # a sandbox run is a tool call: budgets and meters see it
            output = ran.stdout if ran.ok else ""
            return result, code, printed_answer(output) if ran.ok else None

        samples = await gather_all(*(sample(i) for i in range(planned)))
        candidates: list[Candidate] = []
        for result, code, value in samples:
            statement = f"The answer is {value}." if value is not None else "The program printed no answer."
            candidates.append(
                Candidate(
                    text=f"```python\n{code.rstrip()}\n```\n{statement}",
                    model=result.model,
                    answer=value,
                    mean_logprob=result.mean_logprob,
                )
            )
        if budget_reached(context) and len(candidates) < n:
            stopped = "budget"
        ballots = [
            Ballot(c.answer, mean_logprob=c.mean_logprob, complete=r.finish_reason != "length")
            for c, (r, _, _) in zip(candidates, samples, strict=True)
        ]
        vote = tally(ballots, lambda a, b: same_answer(a, b, mode="number"))
        chosen = vote.winner
        if chosen is not None and context.verifier is not None:
            await verify_into(context.verifier, task, candidates[chosen], chosen, detail="chosen answer")
        return StrategyResult(
            answer=candidates[chosen].text if chosen is not None else None,
            chosen=chosen,
            candidates=candidates,
            stopped=stopped,
            info={
                "programs": len(candidates),
                "answered": sum(c.answer is not None for c in candidates),
                "votes": vote.weights(),
                "abstained": vote.abstained,
            },
        )

    return Strategy(run, needs={model: ModelCapabilities()})
