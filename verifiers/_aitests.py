"""Tests written by a model from the problem statement (AlphaCodium's "AI tests").

Model-written tests can be wrong (the expected value is the model's guess), so their results
are marked ``source="ai"`` and their verdicts untrusted; combine them with given tests through
``weighted`` or ``first_failure`` rather than in place of them.
"""

import ast
import asyncio
import hashlib
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from forkpath._errors import VerifierError
from forkpath._params import Count
from forkpath._types import IOCase, Task
from forkpath.models import GenerateRequest, Message, Model
from forkpath.verifiers._extract import PYTHON_TAGS, fenced_blocks
from forkpath.verifiers._judge import ModelRef, resolve_model
from forkpath.verifiers._python import PythonTestsVerifier
from forkpath.verifiers._registry import verifiers
from forkpath.verifiers._sandbox import Limits
from forkpath.verifiers._types import Verdict

FUNCTION_PROMPT = (
    "Here is a programming problem:\n\n{problem}\n\n"
    "Write {n} new test cases for the function `{name}`, including edge cases, as Python assert "
    "statements, one per line, each like `assert {name}(...) == ...`. "
    "Reply with only the asserts in a ```python block."
)
IO_PROMPT = (
    "Here is a programming problem whose solution reads standard input and writes standard output:"
    "\n\n{problem}\n\nWrite {n} new test cases, including edge cases, as a YAML list of mappings "
    "with keys `input` and `output` (use block strings `|`). Reply with only the YAML in a ```yaml block."
)


class GeneratedTests(BaseModel):
    """Tests a model wrote for one task."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    model: str
    """Id of the model that wrote them."""
    asserts: list[str] = Field(default_factory=list)
    io_cases: list[IOCase] = Field(default_factory=list)
    raw: str = ""
    """The model's reply, for inspection."""

    @property
    def count(self) -> int:
        return len(self.asserts) + len(self.io_cases)


def function_name(task: Task) -> str | None:
    """The function under test: the entry point, or the first function the given asserts call."""
    if task.entry_point:
        return task.entry_point
    for text in task.asserts:
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                return node.func.id
    return None


def parse_asserts(reply: str, name: str, limit: int) -> list[str]:
    """Single-line ``assert`` statements that compile and call ``name``, deduplicated."""
    blocks = [code for lang, code in fenced_blocks(reply) if lang in PYTHON_TAGS]
    text = "\n".join(blocks) if blocks else reply
    found: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("assert ") or line in found:
            continue
        try:
            tree = ast.parse(line)
        except SyntaxError:
            continue
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
        if any(call.func.id == name for call in calls):  # type: ignore[attr-defined]
            found.append(line)
    return found[:limit]


def parse_io_cases(reply: str, limit: int) -> list[IOCase]:
    """``input``/``output`` pairs from a YAML list in the reply; malformed entries are skipped."""
    blocks = [code for lang, code in fenced_blocks(reply) if lang in ("", "yaml", "yml")]
    try:
        data: Any = yaml.safe_load(blocks[0] if blocks else reply)
    except yaml.YAMLError:
        return []
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), [])
    cases: list[IOCase] = []
    for item in data if isinstance(data, list) else []:
        if isinstance(item, dict) and "input" in item and "output" in item:
            cases.append(IOCase(input=_text(item["input"]), output=_text(item["output"])))
    return cases[:limit]


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(v) for v in value) + "\n"
    text = str(value)
    return text if text.endswith("\n") else text + "\n"


async def generate_tests(
    model: Model, task: Task, *, n: int = 6, temperature: float = 0.0, max_tokens: int = 1024
) -> GeneratedTests:
    """Ask ``model`` for ``n`` new tests of ``task`` in the task's own shape.

    Function tasks (an entry point or asserts) get assert statements; stdin/stdout tasks get
    input/output cases.

    Example:
        >>> tests = await generate_tests(get_model("openai/gpt-4o-mini"), task, n=5)
    """
    name = function_name(task)
    io = not name and (bool(task.io_cases) or task.kind == "code")
    if not name and not io:
        raise VerifierError(f"task {task.id}: cannot tell what to test (no entry point, asserts or io_cases)")
    prompt = (IO_PROMPT if io else FUNCTION_PROMPT).format(problem=task.prompt, n=n, name=name)
    request = GenerateRequest(
        messages=(Message(role="user", content=prompt),), max_tokens=max_tokens, temperature=temperature
    )
    reply = (await model.generate(request)).text
    tests = GeneratedTests(task_id=task.id, model=model.id, raw=reply)
    if io:
        tests.io_cases = parse_io_cases(reply, n)
    else:
        tests.asserts = parse_asserts(reply, name or "", n)
    return tests


class AITestsVerifier:
    """Runs a candidate against tests a model wrote for its task (generated once per task).

    Args:
        model: the test writer.
        n: tests to ask for.
        limits: sandbox limits of each run.
    """

    def __init__(self, model: Model, *, n: int = 6, limits: Limits | None = None) -> None:
        self.model = model
        self.n = n
        self.runner = PythonTestsVerifier(limits, source="ai", name="ai_tests")
        self._tests: dict[str, asyncio.Future[GeneratedTests]] = {}

    async def tests_for(self, task: Task) -> GeneratedTests:
        """The generated tests of ``task``; concurrent callers share one generation."""
        key = hashlib.sha256(f"{task.id}\0{task.prompt}".encode()).hexdigest()
        future = self._tests.get(key)
        loop = asyncio.get_running_loop()
        if future is None or future.get_loop() is not loop or (future.done() and future.exception()):
            future = self._tests[key] = loop.create_task(generate_tests(self.model, task, n=self.n))
        return await asyncio.shield(future)

    async def verify(self, task: Task, candidate: str) -> Verdict:
        tests = await self.tests_for(task)
        if not tests.count:
            raise VerifierError(f"task {task.id}: model {self.model.id} wrote no usable tests")
        ai_task = task.model_copy(update={"test": None, "asserts": tests.asserts, "io_cases": tests.io_cases})
        verdict = await self.runner.verify(ai_task, candidate)
        verdict.details["tests_by"] = self.model.id
        return verdict


@verifiers.register("ai_tests")
def ai_tests(model: ModelRef, n: Count = 6, limits: Limits | None = None) -> AITestsVerifier:
    """Run the candidate on tests a model writes from the problem statement (untrusted).

    Args:
        model: model string or object that writes the tests.
        n: how many tests to ask for.
        limits: sandbox limits of each run.
    """
    return AITestsVerifier(resolve_model(model), n=n, limits=limits)
