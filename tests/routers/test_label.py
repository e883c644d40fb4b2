"""The R2R-style label pipeline: exact mismatches and labels on scripted fakes; the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forkpath import CapabilityError, Task
from forkpath import task_set as load_tasks
from forkpath._cli._router import app
from forkpath.models import FakeModel
from forkpath.routers import TOKEN_FEATURES, TokenLabel, label_tokens, read_records
from forkpath.routers._label import materially_different

from ._fakes import ScriptedFake

TASK = Task(id="t/0", prompt="Q?", kind="text")
LARGE = "```python\nx = 3 + 2  # sum\nprint(x)\n```\nIt prints 5.\n"
VARIANTS = [
    LARGE.replace("3 +", "1 +"),  # a different number in code: divergent
    LARGE.replace("# sum", "# add two"),  # a different comment: neutral
    LARGE.replace("prints 5", "shows 5"),  # rewording in prose: neutral
    LARGE.replace("prints 5", "prints 6"),  # a different number in prose: divergent
]


def test_the_material_difference_rule() -> None:
    assert materially_different("x = 1 + 2", "x = 3 + 2", in_code=True)
    assert not materially_different("x = 3 + 2  # add", "x=3+2 # sum", in_code=True)
    assert materially_different("    return x", "return x", in_code=True)  # indentation is Python
    assert not materially_different("s = '#' + t", "s = '#' + t  # hash", in_code=True)
    assert materially_different("s = '#' + t", "s = '%' + t", in_code=True)
    assert not materially_different("This returns the sum.", "It gives the sum.", in_code=False)
    assert materially_different("The answer is 5.", "The answer is 6.", in_code=False)
    assert materially_different("Use `sorted`.", "Use `sort`.", in_code=False)


async def test_labels_follow_the_simplified_r2r_pipeline_exactly() -> None:
    # Teacher forcing follows LARGE; the small model prefers each variant where it branches off.
    small = ScriptedFake("fake/small", [*VARIANTS, LARGE])
    large = ScriptedFake("fake/large", [LARGE, *VARIANTS])
    labels = await label_tokens(small, large, [TASK], max_tokens=200, line_tokens=40)
    assert len(labels) == len(LARGE)
    assert all(isinstance(r, TokenLabel) and set(r.features) == set(TOKEN_FEATURES) for r in labels)
    mismatches = [r for r in labels if r.mismatch]
    where = [LARGE.index("3 +"), LARGE.index("sum"), LARGE.index("prints") + 1, LARGE.index("5.")]
    assert [r.position for r in mismatches] == [where[0], where[1], where[2] - 1, where[3]]
    assert [(r.small_line, r.large_line, r.label) for r in mismatches] == [
        ("x = 1 + 2  # sum", "x = 3 + 2  # sum", 1),
        ("x = 3 + 2  # add two", "x = 3 + 2  # sum", 0),
        ("It shows 5.", "It prints 5.", 0),
        ("It prints 6.", "It prints 5.", 1),
    ]
    assert all(r.label == 0 and r.small_token == r.large_token for r in labels if not r.mismatch)
    # Four continuations were generated, one per mismatch, plus the large model's answer.
    assert large.calls == 5


async def test_labelling_needs_a_shared_tokenizer() -> None:
    with pytest.raises(CapabilityError, match="router label needs two models with a shared tokenizer"):
        await label_tokens(FakeModel("fake/a"), FakeModel("fake/b", tokenizer_id="x"), [TASK])


def test_cli_label_writes_records(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        TASK.model_dump_json() + "\n" + TASK.model_copy(update={"id": "t/1"}).model_dump_json() + "\n"
    )
    out = tmp_path / "labels.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "label",
            "--small",
            "fake/s",
            "--large",
            "fake/l",
            "--tasks",
            str(tasks),
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    records = read_records(out)
    # The large fake answers "I do not know." (14 tokens) to each task; the summary counts the file.
    assert summary == {
        "out": str(out),
        "kind": "token",
        "tasks": 2,
        "records": 28,
        "mismatches": sum(r.mismatch for r in records),
        "divergent": sum(r.label for r in records),
    }
    assert [r.position for r in records[:14]] == list(range(14)) and {r.task for r in records} == {
        "t/0",
        "t/1",
    }
    people = CliRunner().invoke(
        app, ["label", "--small", "fake/s", "--large", "fake/l", "--tasks", str(tasks), "--out", str(out)]
    )
    assert people.exit_code == 0 and "28 token labels from 2 tasks" in people.output


def test_task_selections() -> None:
    assert [t.id for t in load_tasks("humaneval:0-2,7")] == [
        "HumanEval/0",
        "HumanEval/1",
        "HumanEval/2",
        "HumanEval/7",
    ]
    assert len(load_tasks("humaneval")) == 164
    runner = CliRunner()
    for spec, message in (("humaneval:170", "tasks 0..163"), ("humaneval:a-b", "bad HumanEval selection")):
        result = runner.invoke(
            app, ["label", "--small", "fake/s", "--large", "fake/l", "--tasks", spec, "--out", "x"]
        )
        assert result.exit_code == 2 and message in result.output


async def test_teacher_forcing_in_chunks_equals_position_by_position() -> None:
    from collections.abc import Sequence
    from typing import ClassVar

    import numpy as np

    from forkpath.models import teacher_force

    class Batched(ScriptedFake):
        """Batched teacher forcing, as the llama.cpp backend offers it (here by looping)."""

        batches: ClassVar[list[int]] = []

        async def continuation_logprobs(
            self, prefix: Sequence[int], continuation: Sequence[int]
        ) -> np.ndarray:
            self.batches.append(len(continuation))
            return np.stack(
                [
                    await self.next_token_logprobs([*prefix, *continuation[:i]])
                    for i in range(len(continuation) + 1)
                ]
            )

    plain = ScriptedFake("fake/a", [LARGE])
    batched = Batched("fake/a", [LARGE])
    prefix = plain.tokenize("user: Q?")
    answer = plain.tokenize(LARGE[:10])
    expected = await teacher_force(plain, prefix, answer)  # no batched method: one call per position
    chunked = await teacher_force(batched, prefix, answer, chunk=4)
    assert expected.shape == chunked.shape == (11, 128)
    assert np.array_equal(expected, chunked)
    assert batched.batches == [4, 4, 2]
