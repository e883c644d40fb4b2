"""The fixed dev/test split of every task set: deterministic, disjoint, complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from forkpath import DatasetSpec, load_tasks, parse_dataset
from forkpath._datasets import split_of
from forkpath._errors import ConfigError


@pytest.mark.parametrize(("name", "dev", "test"), [("humaneval", 51, 113), ("gsm8k", 390, 929)])
def test_builtin_splits_are_disjoint_complete_and_pinned(name: str, dev: int, test: int) -> None:
    every = [t.id for t in load_tasks(DatasetSpec(name=name))]  # type: ignore[arg-type]
    dev_ids = [t.id for t in load_tasks(DatasetSpec(name=name, split="dev"))]  # type: ignore[arg-type]
    test_ids = [t.id for t in load_tasks(DatasetSpec(name=name, split="test"))]  # type: ignore[arg-type]
    assert (len(dev_ids), len(test_ids)) == (dev, test)
    assert not set(dev_ids) & set(test_ids)
    assert sorted(dev_ids + test_ids) == sorted(every)
    # dataset order is kept inside each split
    assert dev_ids == [i for i in every if i in set(dev_ids)]


def test_split_depends_on_the_id_only(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    rows = [{"id": f"t{i}", "prompt": f"q{i}", "answer": str(i)} for i in range(200)]
    path.write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)), encoding="utf-8")
    dev = {t.id for t in load_tasks(DatasetSpec(name="jsonl", path=str(path), split="dev"))}
    assert dev == {r["id"] for r in rows if split_of(r["id"]) == "dev"}
    assert 30 < len(dev) < 90  # about 0.3 of 200
    # offset and limit apply inside the split
    first = load_tasks(DatasetSpec(name="jsonl", path=str(path), split="dev", limit=3))
    assert all(t.id in dev for t in first) and len(first) == 3


def test_bad_split_input_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown split 'train'"):
        parse_dataset("humaneval", "train")
    with pytest.raises(ValidationError):
        DatasetSpec(name="gsm8k", split="train")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        DatasetSpec(name="gsm8k", dev_fraction=1.5)
