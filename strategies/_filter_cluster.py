"""filter_and_cluster: AlphaCode's sample → filter → cluster (Li et al. 2022, arXiv 2203.07814).

1. Sample ``n`` programs.
2. Keep those that pass the given tests: the context's verifier (``filter_by="verifier"``) or the
   task's public examples (``filter_by="examples"``, see :mod:`._helpers`).
3. Ask the model for ``inputs`` new test *inputs* (no outputs), run every survivor on each in
   the sandbox, and group programs with identical behaviour (outputs compared after
   whitespace normalisation; a crash or timeout is an output of its own). Inputs on which every
   survivor crashes are dropped as invalid before grouping.
4. Return one program per cluster, largest cluster first, at most ``submissions`` of them; the
   first is the answer. Clusters are ranked, and a cluster's program chosen, by the one voting
   rule (:mod:`forkpath.strategies._vote`): a cluster is a group of equal votes, a program that
   crashes on every kept input abstains, ties go to the more likely cluster (mean token logprob)
   or else the one with the earliest complete sample.

With no survivor the filter is skipped and all samples are clustered (``info.filtered_all``).
Function tasks (an entry point) get inputs as argument lists; stdin/stdout tasks as texts.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from forkpath import gather_all
from forkpath._params import Count, Seed, Temperature, Tokens
from forkpath._prompts import PromptTemplate, task_messages
from forkpath._types import Task
from forkpath.models import GenerateRequest, Message, Model, ModelCapabilities
from forkpath.strategies._base import Candidate, Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._helpers import ExamplesVerifier, budget_reached, verify_into
from forkpath.strategies._vote import Ballot, representative, tally

CALL_INPUTS = (
    "Here is a programming problem:\n\n{problem}\n\nWrite {n} different valid inputs for the function "
    "`{name}`, including edge cases, one call per line, like `{name}(...)`. Reply with only the calls in a "
    "```python block."
)
STDIN_INPUTS = (
    "Here is a programming problem whose solution reads standard input:\n\n{problem}\n\n"
    "Write {n} different valid inputs, including edge cases, each in its own ```text block."
)
CRASH = "<crash>"
_DRIVER = """
import json as __fp_json
__fp_out = []
for __fp_call in __fp_json.loads({calls!r}):
    try:
        __fp_value = eval(__fp_call)
        __fp_out.append(repr(__fp_value)[:2000])
    except BaseException as __fp_error:
        __fp_out.append({crash!r})
print(__fp_json.dumps(__fp_out))
"""


def parse_calls(reply: str, name: str, limit: int) -> list[str]:
    """``name(...)`` call expressions, one per line, that parse; deduplicated."""
    import ast

    found: list[str] = []
    for line in reply.splitlines():
        line = line.strip().rstrip(";")
        if line.startswith(">>>"):
            line = line[3:].strip()
        if not line.startswith(f"{name}(") or line in found:
            continue
        try:
            tree = ast.parse(line, mode="eval")
        except SyntaxError:
            continue
        if isinstance(tree.body, ast.Call):
            found.append(line)
    return found[:limit]


def parse_stdin_inputs(reply: str, limit: int) -> list[str]:
    """The contents of the fenced blocks of a reply, as stdin texts."""
    blocks = re.findall(r"```[^\n]*\n(.*?)```", reply, flags=re.DOTALL)
    found: list[str] = []
    for block in blocks:
        text = block if block.endswith("\n") else block + "\n"
        if text.strip() and text not in found:
            found.append(text)
    return found[:limit]


def _normal(output: str) -> str:
    return " ".join(output.split())


async def behaviour(task: Task, program: str, inputs: list[str]) -> list[str]:
    """What ``program`` (a candidate answer) outputs on each input; :data:`CRASH` for failures."""
    from forkpath.verifiers import extract_code, humaneval_program, run_program

    if task.entry_point:
        code = (
            humaneval_program(task.prompt, program, task.entry_point)
            if task.test
            else extract_code(program, task.entry_point)
        )
        run = await run_program(code + _DRIVER.format(calls=json.dumps(inputs), crash=CRASH))
        try:
            outputs = (
                json.loads(run.stdout.strip().splitlines()[-1]) if run.ok and run.stdout.strip() else None
            )
        except (json.JSONDecodeError, IndexError):
            outputs = None
        if not isinstance(outputs, list) or len(outputs) != len(inputs):
            return [CRASH] * len(inputs)
        return [str(o) for o in outputs]
    code = extract_code(program)
    runs = await gather_all(*(run_program(code, stdin) for stdin in inputs))
    return [_normal(r.stdout) if r.ok else CRASH for r in runs]


def clusters_of(signatures: list[tuple[str, ...]], ballots: list[Ballot] | None = None) -> list[list[int]]:
    """Indexes grouped by identical signature, ranked by the voting rule (largest first; ties:
    the more likely cluster, else the earliest complete sample). A signature that is all
    crashes abstains and is in no cluster. ``ballots`` give each index's logprob and whether it
    finished (default: unknown, complete)."""
    votes = [
        Ballot(
            answer=None if signature and all(o == CRASH for o in signature) else json.dumps(signature),
            mean_logprob=ballots[i].mean_logprob if ballots else None,
            complete=ballots[i].complete if ballots else True,
        )
        for i, signature in enumerate(signatures)
    ]
    return [group.members for group in tally(votes).groups]


@strategies.register("filter_and_cluster")
def filter_and_cluster(
    n: Count = 16,
    model: str = "default",
    input_model: str | None = None,
    temperature: Temperature = 0.8,
    max_tokens: Tokens = 512,
    filter_by: Literal["verifier", "examples"] = "verifier",
    inputs: Count = 8,
    input_tokens: Tokens = 384,
    submissions: Count = 1,
    seed: Seed = 0,
    prompt: PromptTemplate | None = None,
) -> Strategy:
    """Sample programs, keep those passing the given tests, cluster by behaviour, pick by cluster size.

    Args:
        n: programs to sample.
        model: the context's model role that writes programs.
        input_model: the role that writes test inputs (default: ``model``).
        temperature: sampling temperature.
        max_tokens: most tokens per program.
        filter_by: ``verifier``: the context's verifier is the filter (give it the *public* tests);
            ``examples``: the task's public examples (HumanEval docstring examples).
        inputs: test inputs to ask for, for clustering.
        input_tokens: most tokens of the reply that writes the test inputs.
        submissions: programs returned, one per cluster, largest first (candidates' order in
            ``info.submissions``); the first is the answer.
        seed: base sampling seed.
        prompt: a template for the user message.
    """
    roles = {model: ModelCapabilities(), (input_model or model): ModelCapabilities()}

    async def run(task: Task, context: Context) -> StrategyResult:
        if task.kind != "code":
            from forkpath._errors import ConfigError

            raise ConfigError(f"filter_and_cluster works on code tasks; task {task.id} is {task.kind!r}")
        writer, input_writer = context.model(model), context.model(input_model or model)
        tester: Any = context.verifier if filter_by == "verifier" else ExamplesVerifier()
        base = GenerateRequest(
            messages=task_messages(task, prompt),
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            logprobs=writer.capabilities.logprobs,
        )
        stopped: Stopped = "done"
        calls_left = context.budget.calls_left()
        planned = n if calls_left is None else min(n, max(0, calls_left - 1))  # keep one call for inputs
        if planned < n:
            stopped = "budget"
        results = []
        for i in range(planned):
            if budget_reached(context):
                stopped = "budget"
                break
            results.append(await writer.generate(base.model_copy(update={"sample_index": i})))
        candidates = [Candidate(text=r.text, model=r.model, mean_logprob=r.mean_logprob) for r in results]
        for i, candidate in enumerate(candidates):
            await verify_into(tester, task, candidate, i, detail="filter")
        survivors = [i for i, c in enumerate(candidates) if c.passed]
        filtered_all = not survivors
        pool = survivors or list(range(len(candidates)))
        test_inputs: list[str] = []
        if len(pool) > 1 and not budget_reached(context):
            test_inputs = await _write_inputs(input_writer, task, inputs, input_tokens)
        signatures: list[tuple[str, ...]] = [()] * len(pool)
        kept_inputs = test_inputs
        if test_inputs:
            outputs = await gather_all(*(behaviour(task, candidates[i].text, test_inputs) for i in pool))
            valid = [j for j in range(len(test_inputs)) if any(o[j] != CRASH for o in outputs)]
            kept_inputs = [test_inputs[j] for j in valid]
            signatures = [tuple(o[j] for j in valid) for o in outputs]
        ballots = [
            Ballot(
                None, mean_logprob=candidates[i].mean_logprob, complete=results[i].finish_reason != "length"
            )
            for i in pool
        ]
        ranked = clusters_of(signatures, ballots)
        groups = [[pool[i] for i in g] for g in ranked]
        picks = [pool[representative(ballots, g)] for g in ranked][:submissions]
        chosen = picks[0] if picks else None
        if filter_by != "verifier" and context.verifier is not None and chosen is not None:
            for i in picks:
                await verify_into(
                    context.verifier, task, candidates[i], i, detail="submission", set_score=False
                )
        return StrategyResult(
            answer=candidates[chosen].text if chosen is not None else None,
            chosen=chosen,
            candidates=candidates,
            stopped=stopped,
            info={
                "samples": len(candidates),
                "survivors": len(survivors),
                "filtered_all": filtered_all,
                "inputs": len(kept_inputs),
                "clusters": [len(g) for g in groups],
                "cluster_members": groups,
                "submissions": picks,
            },
        )

    return Strategy(run, needs=roles, needs_verifier=filter_by == "verifier")


async def _write_inputs(model: Model, task: Task, n: int, max_tokens: int) -> list[str]:
    if task.entry_point:
        text = CALL_INPUTS.format(problem=task.prompt, n=n, name=task.entry_point)
    else:
        text = STDIN_INPUTS.format(problem=task.prompt, n=n)
    result = await model.generate(
        GenerateRequest(
            messages=(Message(role="user", content=text),), max_tokens=max_tokens, temperature=0.0
        )
    )
    if task.entry_point:
        return parse_calls(result.text, task.entry_point, n)
    return parse_stdin_inputs(result.text, n)
