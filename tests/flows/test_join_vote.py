"""The flow ``join: vote`` node follows the one voting rule: numbers read by the task's kind,
abstentions that never win, no answer when nobody can be read; from YAML, the SDK and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from forkpath import Task, load_task
from forkpath.flows import Flow

NUMERIC = Task(
    id="n/0", prompt="What is 6*7?", kind="math", answer="42", metadata={"answer_format": "number"}
)


def _voting_flow(answers: list[str]) -> str:
    models = "\n".join(
        f'  m{i}: {{model: fake/m{i}, options: {{script: {{"6*7": [{json.dumps(a)}]}}}}}}'
        for i, a in enumerate(answers)
    )
    nodes = "\n".join(
        f'  ask{i}:\n    model: m{i}\n    prompt: "{{{{ prompt }}}}"' for i in range(len(answers))
    )
    edges = "\n".join(f"  - {{from: ask{i}, to: pick}}" for i in range(len(answers)))
    branches = ", ".join(f"ask{i}" for i in range(len(answers)))
    return (
        f'name: vote\nmodels:\n{models}\nnodes:\n  frame:\n    prompt: "{{{{ prompt }}}}"\n{nodes}\n'
        f"  pick:\n    join: vote\nedges:\n  - {{from: frame, to: [{branches}]}}\n{edges}\n  - {{from: pick, to: end}}\n"
    )


ISSUE_VOTES = ["The answer is N.", "The answer is N = 42.", "The answer is 41 - 7M.", "So \\boxed{42.00}"]


async def test_placeholders_abstain_and_numbers_win(tmp_path: Path) -> None:
    result = await Flow.from_yaml_text(_voting_flow(ISSUE_VOTES)).run(NUMERIC, runs_dir=tmp_path)
    assert result.answer in ("The answer is N = 42.", "So \\boxed{42.00}")
    assert result.score == 0.5  # two of the four votes; the other two abstained


async def test_a_vote_nobody_can_read_has_no_answer(tmp_path: Path) -> None:
    flow = Flow.from_yaml_text(
        _voting_flow(["The answer is N.", "The answer is \\boxed{}", "I am not sure."])
    )
    result = await flow.run(NUMERIC, runs_dir=tmp_path)
    assert result.answer is None and result.score == 0.0


async def test_the_sdk_builds_the_same_vote(tmp_path: Path) -> None:
    flow = Flow(
        "vote",
        models={
            f"m{i}": {"model": f"fake/m{i}", "options": {"script": {"6*7": [a]}}}
            for i, a in enumerate(ISSUE_VOTES)
        },
    )
    flow.node("frame", prompt="{{ prompt }}")
    for i in range(len(ISSUE_VOTES)):
        flow.node(f"ask{i}", model=f"m{i}", prompt="{{ prompt }}")
    flow.node("pick", join="vote")
    flow.edge("frame", [f"ask{i}" for i in range(len(ISSUE_VOTES))])
    for i in range(len(ISSUE_VOTES)):
        flow.edge(f"ask{i}", "pick")
    flow.edge("pick", "end")
    assert flow.validate().spec == Flow.from_yaml_text(_voting_flow(ISSUE_VOTES)).spec
    result = await flow.run(NUMERIC, runs_dir=tmp_path)
    assert result.score == 0.5 and "42" in (result.answer or "")


def test_gsm8k_tasks_vote_on_numbers_from_the_cli(tmp_path: Path) -> None:
    task = load_task("gsm8k/1")
    reference = task.answer
    flow = tmp_path / "vote.yaml"
    answers = [
        "The answer is N.",
        f"So she pays ${reference}.00 in all. The answer is N = {reference}.",
        "The answer is N.",
    ]
    flow.write_text(
        _voting_flow(answers).replace('"6*7"', json.dumps(task.prompt[:30])) + "verifier: math_answer\n"
    )
    ran = subprocess.run(
        [sys.executable, "-m", "forkpath._cli", "run", str(flow), "--task", "gsm8k/1", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["answer"] == answers[1] and result["score"] == 1 / 3
