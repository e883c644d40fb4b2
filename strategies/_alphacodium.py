"""alphacodium: the test-driven code flow of Ridnik et al. 2024 (arXiv 2401.08500).

Stages (algorithms.md §f), each one model call unless said otherwise:

1. *Reflection*: the goal, inputs, outputs, rules, and how each public test's input gives its output.
2. *Possible solutions*: a few different approaches, simple and robust first.
3. *Choice* of the approach to implement (skipped when there is only one).
4. *AI tests*: extra tests the model writes from the problem statement
   (:func:`~forkpath.verifiers.generate_tests`; they can be wrong, which the anchors contain).
5. *Initial code*, run on the public tests; up to ``max_attempts`` tries, cycling through the
   approaches, keeping the attempt that passes the most.
6. *Fixing on public tests*: each failing public test gets up to ``fixes_per_test`` fixes; a
   fix is kept only if that test now passes and no *anchor* (a test that passed before) fails.
7. *Fixing on AI tests*: a passing AI test becomes an anchor; a failing one gets one fix, kept
   if it now passes (or the code used to crash on it) and every anchor still passes.

The flow never edits tests, only code. All fix calls together are bounded by ``max_fix_calls``.

Which tests are public (what the flow may look at): see :func:`~._helpers.public_task`. For
HumanEval these are the examples in the prompt's docstring; the hidden ``check`` is never shown
to the model and never run by the flow: the context's verifier judges only the final code
(``passed``). A prompt without examples leaves stage 6 empty and relies on the AI tests.
Differences from the reference: plain-text stage outputs instead of YAML (small models break
YAML), and the best initial attempt is chosen by the fraction of public tests passed instead
of an output distance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from forkpath._params import Count, CountOrZero, Seed, Temperature, Tokens
from forkpath._trace import VerdictEvent, emit
from forkpath._types import IOCase, Task
from forkpath.models import GenerateRequest, Message, Model, ModelCapabilities
from forkpath.strategies._base import Candidate, Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._helpers import budget_reached, public_task, verify_into

SYSTEM = "You are an expert competitive programmer. You reason carefully and write correct, simple Python."
REFLECT = (
    "Problem:\n{problem}\n\nExample tests:\n{tests}\n\n"
    "First describe in a few bullet points the goal, the inputs, the outputs, and the rules and edge "
    "cases of the problem. Then explain for each example test, in one or two sentences, how its input "
    "leads to its output. Do not write code."
)
SOLUTIONS = (
    "Problem:\n{problem}\n\nAnalysis:\n{reflection}\n\n"
    "Propose {n} different correct ways to solve the problem, the simplest and most robust first. "
    "Number them 1., 2., ... and describe each in two or three sentences, without code."
)
CHOOSE = (
    "Problem:\n{problem}\n\nPossible approaches:\n{solutions}\n\n"
    "Which approach is the simplest one that is fully correct? Reply with its number only."
)
CODE = (
    "Problem:\n{problem}\n\nAnalysis:\n{reflection}\n\nApproach:\n{solution}\n\n"
    "Write the complete solution in Python following this approach{shape}. "
    "Answer with one ```python code block."
)
FIX = (
    "Problem:\n{problem}\n\nCurrent code:\n```python\n{code}\n```\n\n"
    "It fails this test:\n{test}\nResult: {message}\n\n"
    "Say in one or two sentences what goes wrong, then give the complete fixed code as one ```python block."
)
NO_TESTS = "(no example tests are given)"


@dataclass
class _Test:
    """One test the flow may run: an assert statement or a stdin/stdout case."""

    source: str
    """``public`` or ``ai``."""
    assertion: str | None = None
    case: IOCase | None = None

    def describe(self) -> str:
        if self.assertion is not None:
            return self.assertion
        assert self.case is not None
        return f"input:\n{self.case.input}expected output:\n{self.case.output}"


@dataclass
class _Run:
    """Per-test outcomes of one code version."""

    passed: list[bool]
    messages: list[str]
    reasons: list[str]


@dataclass
class _State:
    candidates: list[Candidate] = field(default_factory=list)
    current: int | None = None
    fix_calls: int = 0
    fixes_kept: int = 0
    stage_calls: dict[str, int] = field(default_factory=dict)


def split_solutions(text: str, limit: int) -> list[str]:
    """The numbered approaches in a reply (``1.`` / ``1)`` / ``Approach 1``); the whole text if none."""
    parts = re.split(
        r"(?m)^\s*(?:#+\s*)?(?:\*\*)?(?:approach|solution)?\s*\d+\s*[.):]", text, flags=re.IGNORECASE
    )
    found = [p.strip().lstrip("*").strip() for p in parts[1:] if p.strip().lstrip("*").strip()]
    return (found or [text.strip()])[:limit]


def chosen_number(text: str, count: int) -> int:
    """The 0-based approach a reply picks (0 when it names none in range)."""
    match = re.search(r"\d+", text)
    if match and 1 <= int(match.group(0)) <= count:
        return int(match.group(0)) - 1
    return 0


def _code(answer: str, task: Task) -> str:
    from forkpath.verifiers import extract_code

    return extract_code(answer, task.entry_point).strip()


@strategies.register("alphacodium")
def alphacodium(
    model: str = "default",
    solutions: Count = 2,
    ai_tests: CountOrZero = 4,
    max_attempts: Count = 2,
    fixes_per_test: CountOrZero = 2,
    max_fix_calls: CountOrZero = 4,
    stage_tokens: Tokens = 384,
    code_tokens: Tokens = 512,
    prompt_temperature: Temperature = 0.2,
    code_temperature: Temperature = 0.3,
    seed: Seed = 0,
) -> Strategy:
    """Reflect, plan, write tests, code and fix against public and AI tests with test anchors.

    Args:
        model: the context's model role.
        solutions: approaches asked for in stage 2 (1 skips the choice).
        ai_tests: tests the model writes in stage 4 (0 skips stages 4 and 7).
        max_attempts: initial-code attempts in stage 5 (cycling through the approaches).
        fixes_per_test: fix attempts per failing public test in stage 6.
        max_fix_calls: fix calls over stages 6 and 7 together.
        stage_tokens: most tokens of the reflection, approaches and choice replies.
        code_tokens: most tokens of a code, fix or AI-tests reply.
        prompt_temperature: temperature of the reflection, approaches, choice, AI tests and fixes.
        code_temperature: temperature of initial code attempts.
        seed: sampling seed.
    """
    from forkpath._errors import ConfigError

    if solutions < 1 or max_attempts < 1:
        raise ConfigError(
            f"alphacodium: solutions and max_attempts must be at least 1, got {solutions}, {max_attempts}"
        )

    async def run(task: Task, context: Context) -> StrategyResult:
        if task.kind != "code":
            raise ConfigError(f"alphacodium works on code tasks; task {task.id} is {task.kind!r}")
        coder = context.model(model)
        flow = _Flow(task, coder, context, seed)
        stopped = await flow.run(
            solutions=solutions,
            ai_tests=ai_tests,
            max_attempts=max_attempts,
            fixes_per_test=fixes_per_test,
            max_fix_calls=max_fix_calls,
            stage_tokens=stage_tokens,
            code_tokens=code_tokens,
            prompt_temperature=prompt_temperature,
            code_temperature=code_temperature,
        )
        state = flow.state
        chosen = state.current
        if context.verifier is not None and chosen is not None:
            await verify_into(
                context.verifier, task, state.candidates[chosen], chosen, detail="final code", set_score=False
            )
        return StrategyResult(
            answer=state.candidates[chosen].text if chosen is not None else None,
            chosen=chosen,
            candidates=state.candidates,
            stopped=stopped,
            info={
                "public_tests": len(flow.public),
                "ai_tests": len(flow.ai),
                "anchors": len(flow.anchors),
                "fix_calls": state.fix_calls,
                "fixes_kept": state.fixes_kept,
                "stage_calls": state.stage_calls,
            },
        )

    return Strategy(run, needs={model: ModelCapabilities()})


class _Flow:
    """One run of the flow on one task (the stages share this state)."""

    def __init__(self, task: Task, coder: Model, context: Context, seed: int) -> None:
        from forkpath.verifiers import make_verifier

        self.task = task
        self.coder = coder
        self.context = context
        self.seed = seed
        self.runner: Any = make_verifier("python_tests")
        self.state = _State()
        public = public_task(task)
        self.public: list[_Test] = []
        if public is not None:
            self.public = [_Test("public", assertion=a) for a in public.asserts] + [
                _Test("public", case=c) for c in public.io_cases
            ]
        self.ai: list[_Test] = []
        self.anchors: list[_Test] = []
        self.problem = task.prompt.strip()
        self._sample = 0

    async def ask(self, stage: str, text: str, max_tokens: int, temperature: float) -> str:
        self._sample += 1
        self.state.stage_calls[stage] = self.state.stage_calls.get(stage, 0) + 1
        result = await self.coder.generate(
            GenerateRequest(
                messages=(Message(role="system", content=SYSTEM), Message(role="user", content=text)),
                max_tokens=max_tokens,
                temperature=temperature,
                seed=self.seed,
                sample_index=self._sample,
            )
        )
        return result.text

    async def run_tests(self, answer: str, tests: list[_Test]) -> _Run:
        """Run ``answer`` on ``tests`` in the sandbox (one run for all of them)."""
        if not tests:
            return _Run([], [], [])
        asserts = [t.assertion for t in tests if t.assertion is not None]
        cases = [t.case for t in tests if t.case is not None]
        probe = self.task.model_copy(update={"test": None, "asserts": asserts, "io_cases": cases})
        verdict = await self.runner.verify(probe, answer)
        results = verdict.tests
        if len(results) != len(tests):  # nothing ran per test (no code, syntax error): all failed
            reason = results[0].reason if results else "no_answer"
            message = results[0].message if results else "no code"
            return _Run([False] * len(tests), [message] * len(tests), [reason] * len(tests))
        emit(VerdictEvent(verifier="alphacodium_tests", passed=verdict.passed, score=verdict.score))
        return _Run([r.passed for r in results], [r.message for r in results], [r.reason for r in results])

    def _out_of_budget(self) -> bool:
        return budget_reached(self.context)

    def _add(self, answer: str, score: float) -> int:
        self.state.candidates.append(Candidate(text=answer, model=self.coder.id, score=score))
        return len(self.state.candidates) - 1

    async def run(self, **cfg: Any) -> Stopped:
        tests_text = "\n".join(t.describe() for t in self.public) or NO_TESTS
        if self._out_of_budget():
            return "budget"
        reflection = await self.ask(
            "reflection",
            REFLECT.format(problem=self.problem, tests=tests_text),
            cfg["stage_tokens"],
            cfg["prompt_temperature"],
        )
        if self._out_of_budget():
            return "budget"
        approaches_text = await self.ask(
            "solutions",
            SOLUTIONS.format(problem=self.problem, reflection=reflection, n=cfg["solutions"]),
            cfg["stage_tokens"],
            cfg["prompt_temperature"],
        )
        approaches = split_solutions(approaches_text, cfg["solutions"])
        if len(approaches) > 1:
            if self._out_of_budget():
                return "budget"
            numbered = "\n".join(f"{i + 1}. {a}" for i, a in enumerate(approaches))
            pick = await self.ask(
                "choice",
                CHOOSE.format(problem=self.problem, solutions=numbered),
                16,
                cfg["prompt_temperature"],
            )
            first = chosen_number(pick, len(approaches))
            approaches = [approaches[first], *approaches[:first], *approaches[first + 1 :]]
        if cfg["ai_tests"] > 0:
            if self._out_of_budget():
                return "budget"
            await self._ai_tests(cfg["ai_tests"], cfg["prompt_temperature"], cfg["code_tokens"])
        stopped = await self._initial_code(reflection, approaches, cfg)
        if stopped is not None:
            return stopped
        stopped = await self._fix_public(cfg)
        if stopped is not None:
            return stopped
        return await self._fix_ai(cfg) or "done"

    async def _ai_tests(self, n: int, temperature: float, max_tokens: int) -> None:
        from forkpath.verifiers import generate_tests

        self.state.stage_calls["ai_tests"] = 1
        # Only the statement goes to the test writer: the hidden tests are dropped from the task.
        statement = self.task.model_copy(update={"test": None, "asserts": [], "io_cases": []})
        if self.task.io_cases and not self.task.entry_point:
            statement = statement.model_copy(update={"io_cases": self.task.io_cases[:1]})
        written = await generate_tests(
            self.coder, statement, n=n, temperature=temperature, max_tokens=max_tokens
        )
        known = {t.describe() for t in self.public}
        self.ai = [_Test("ai", assertion=a) for a in written.asserts if a not in known] + [
            _Test("ai", case=c) for c in written.io_cases
        ]

    async def _initial_code(
        self, reflection: str, approaches: list[str], cfg: dict[str, Any]
    ) -> Stopped | None:
        shape = (
            f": complete the function `{self.task.entry_point}`, keeping its signature"
            if self.task.entry_point
            else " as a program that reads standard input and prints the answer"
        )
        best: tuple[float, int] | None = None
        for attempt in range(cfg["max_attempts"]):
            if self._out_of_budget():
                break
            approach = approaches[attempt % len(approaches)]
            answer = await self.ask(
                "initial_code",
                CODE.format(problem=self.problem, reflection=reflection, solution=approach, shape=shape),
                cfg["code_tokens"],
                cfg["code_temperature"],
            )
            outcome = await self.run_tests(answer, self.public)
            score = sum(outcome.passed) / len(outcome.passed) if outcome.passed else 0.0
            index = self._add(answer, score)
            if best is None or score > best[0]:
                best = (score, index)
            if not self.public or all(outcome.passed):
                break
        if best is None:
            return "budget"
        self.state.current = best[1]
        return "budget" if self._out_of_budget() else None

    async def _try_fix(self, test: _Test, outcome_message: str, cfg: dict[str, Any]) -> str | None:
        """One fix call for ``test``; the new answer, or None when no fix call is left."""
        if self.state.fix_calls >= cfg["max_fix_calls"] or self._out_of_budget():
            return None
        self.state.fix_calls += 1
        current = self.state.candidates[self.state.current or 0].text
        return await self.ask(
            "fix",
            FIX.format(
                problem=self.problem,
                code=_code(current, self.task),
                test=test.describe(),
                message=outcome_message or "wrong result",
            ),
            cfg["code_tokens"],
            cfg["prompt_temperature"],
        )

    async def _accept_if(self, answer: str, test: _Test, crashed_before: bool) -> bool:
        """Keep ``answer`` if ``test`` passes (or crashed before) and every anchor still passes."""
        outcome = await self.run_tests(answer, [test, *self.anchors])
        # After a crash, code that now runs to a (wrong) answer is progress worth keeping.
        target_ok = outcome.passed[0] or (crashed_before and outcome.reasons[0] == "wrong_answer")
        if target_ok and all(outcome.passed[1:]):
            public_score = await self.run_tests(answer, self.public)
            score = sum(public_score.passed) / len(public_score.passed) if public_score.passed else 0.0
            self.state.current = self._add(answer, score)
            self.state.fixes_kept += 1
            if outcome.passed[0]:
                self.anchors.append(test)
            return True
        return False

    async def _fix_public(self, cfg: dict[str, Any]) -> Stopped | None:
        current = self.state.candidates[self.state.current or 0].text
        outcome = await self.run_tests(current, self.public)
        failing = []
        for test, ok, message in zip(self.public, outcome.passed, outcome.messages, strict=True):
            if ok:
                self.anchors.append(test)
            else:
                failing.append((test, message))
        for test, message in failing:
            for _ in range(cfg["fixes_per_test"]):
                answer = await self._try_fix(test, message, cfg)
                if answer is None:
                    return "budget" if self._out_of_budget() else None
                if await self._accept_if(answer, test, crashed_before=False):
                    break
                retry = await self.run_tests(answer, [test])
                message = retry.messages[0] if retry.messages else message
        return None

    async def _fix_ai(self, cfg: dict[str, Any]) -> Stopped | None:
        for test in self.ai:
            current = self.state.candidates[self.state.current or 0].text
            outcome = await self.run_tests(current, [test])
            if outcome.passed and outcome.passed[0]:
                self.anchors.append(test)
                continue
            answer = await self._try_fix(test, outcome.messages[0] if outcome.messages else "", cfg)
            if answer is None:
                if self._out_of_budget():
                    return "budget"
                continue
            crashed = bool(outcome.reasons) and outcome.reasons[0] in (
                "exception",
                "timeout",
                "crashed",
                "syntax_error",
            )
            await self._accept_if(answer, test, crashed_before=crashed)
        return None
