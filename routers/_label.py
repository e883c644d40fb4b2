"""Calibration data: per-token routing labels (R2R, simplified) and per-query cascade records.

Token labels follow R2R's path-following pipeline (algorithms.md (a)) in a simplified form:

1. The large model answers the calibration prompt greedily (``y_l``).
2. ``y_l`` is teacher-forced through the small model in batches; at each position the small
   model's greedy token ``y_s`` and its features (the same features the router sees live) are
   recorded. Where ``y_s == y_l[i]`` the label is 0 ("identical").
3. At a mismatch, the large model continues greedily from ``y_l[:i] + y_s`` to the end of the
   line (at most ``line_tokens`` tokens). The large branch's line is ``y_l`` itself (it is the
   large model's own greedy continuation), so one generation per mismatch suffices.
4. Instead of R2R's verifier LLM, a rule judges whether the two lines differ *materially*
   (label 1, "divergent") or only superficially (label 0, "neutral"):
   inside a code block, the lines differ materially when their indentation differs or their
   code differs once comments and whitespace inside the line are dropped; in prose, when the
   numbers or the inline code spans (`...`) in them differ; rewording alone is neutral.

Query records (cascades) hold, per calibration task, the small model's answer features and the
quality (tests passed: 1 or 0) and cost (tokens, seconds) of both models' answers, so a
deferral threshold can be set for a target rate or quality and the cost-quality curve drawn.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from forkpath._errors import ConfigError
from forkpath._prompts import answer_request, task_messages
from forkpath._types import Task
from forkpath.models import GenerateRequest, Model, require_shared_tokenizer, teacher_force, token_model
from forkpath.routers._features import (
    UncertaintyWindow,
    result_features,
    summarize_distribution,
    token_features,
)


class TokenLabel(BaseModel):
    """One position of a calibration answer: the small model's features and the routing label."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["token"] = "token"
    task: str
    position: int
    """Index in the large model's answer."""
    small_token: int
    large_token: int
    mismatch: bool
    """The small model's greedy token differs from the large model's."""
    label: int
    """1: routing this token to the large model matters (divergent); 0: identical or neutral."""
    features: dict[str, float]
    small_line: str | None = None
    """At a mismatch: the line as the small model's token leads it (continued by the large model)."""
    large_line: str | None = None
    """At a mismatch: the large model's own line."""


class QueryRecord(BaseModel):
    """One calibration query of a cascade: small-answer features, both models' quality and cost."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["query"] = "query"
    task: str
    features: dict[str, float]
    """Answer features of the small model's answer (``sum_logprob``, ``mean_logprob``, ...)."""
    small_quality: float
    """Quality of the small model's answer (1.0 passed, 0.0 failed)."""
    large_quality: float
    small_tokens: int
    large_tokens: int
    small_seconds: float
    large_seconds: float


Record = Annotated[TokenLabel | QueryRecord, Field(discriminator="type")]
_record: TypeAdapter[Record] = TypeAdapter(Record)


def write_records(path: str | Path, records: Iterable[TokenLabel | QueryRecord]) -> int:
    """Write records as JSON lines; returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(record.model_dump_json() + "\n")
            count += 1
    return count


def read_records(path: str | Path) -> list[TokenLabel | QueryRecord]:
    """Read a label file; a bad line is a :class:`ConfigError` naming ``file:line``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: label file not found")
    records: list[TokenLabel | QueryRecord] = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(_record.validate_python(json.loads(line)))
            except (json.JSONDecodeError, ValidationError) as e:
                first = str(e).splitlines()[0]
                raise ConfigError(f"not a label record: {first}", where=f"{path}:{number}") from None
    if not records:
        raise ConfigError(f"{path}: no records")
    return records


# -- the material-difference rule ------------------------------------------------------------------
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE]-?\d+)?")
_CODE_SPAN = re.compile(r"`([^`]*)`")


def _strip_comment(line: str) -> str:
    """``line`` without a trailing ``#`` comment (a ``#`` inside a string literal is kept)."""
    quote: str | None = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote and line[i - 1] != "\\":
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


def materially_different(a: str, b: str, *, in_code: bool) -> bool:
    """Whether two versions of a line differ in substance (see the module docstring)."""
    if in_code:

        def norm(line: str) -> tuple[int, str]:
            body = _strip_comment(line)
            return len(body) - len(body.lstrip()), re.sub(r"\s+", "", body)

        return norm(a) != norm(b)
    return _NUMBER.findall(a) != _NUMBER.findall(b) or _CODE_SPAN.findall(a) != _CODE_SPAN.findall(b)


def _in_code(text: str) -> bool:
    """Whether the end of ``text`` is inside a fenced code block."""
    return text.count("```") % 2 == 1


# -- token labels ------------------------------------------------------------------------------------
async def label_tokens(
    small: Model,
    large: Model,
    tasks: Sequence[Task],
    *,
    max_tokens: int = 256,
    line_tokens: int = 48,
    window: int = 8,
    prompt: str | None = None,
) -> list[TokenLabel]:
    """Routing labels for every position of the large model's answers to ``tasks``.

    Args:
        small, large: the model pair (token-level access, shared tokenizer).
        tasks: calibration tasks.
        max_tokens: most tokens of each large-model answer.
        line_tokens: most tokens of each mismatch continuation (to the end of the line).
        window: positions in the window features (use the strategy's setting).
        prompt: the user-message template the strategy will use.
    """

    require_shared_tokenizer(small, large, by="router label")
    s_tok, l_tok = token_model(small, by="router label"), token_model(large, by="router label")
    ends = s_tok.end_tokens
    labels: list[TokenLabel] = []
    for task in tasks:
        prefix = s_tok.chat_prefix(task_messages(task, prompt))
        answer = await large.generate(GenerateRequest(prompt_tokens=tuple(prefix), max_tokens=max_tokens))
        y_l = [t for t in (answer.token_ids or []) if t not in ends]
        if not y_l:
            continue
        rows = await teacher_force(small, prefix, y_l)
        recent = UncertaintyWindow(window)
        for i, y in enumerate(y_l):
            lp = rows[i]
            y_s = int(lp.argmax())
            top, ent = summarize_distribution(lp)
            features = token_features(
                top,
                ent,
                chosen_logprob=float(lp[y_s]),
                position=i,
                token_text=s_tok.detokenize([y_s]),
                window=recent,
            )
            record = TokenLabel(
                task=task.id,
                position=i,
                small_token=y_s,
                large_token=y,
                mismatch=y_s != y,
                label=0,
                features=features,
            )
            if y_s != y:
                before = l_tok.detokenize(y_l[:i])
                line_start = before.rsplit("\n", 1)[-1]
                if y_s in ends:
                    branch = ""
                else:
                    cont = await large.generate(
                        GenerateRequest(
                            prompt_tokens=(*prefix, *y_l[:i], y_s), max_tokens=line_tokens, stop=("\n",)
                        )
                    )
                    branch = s_tok.detokenize([y_s]) + cont.text
                record.small_line = (line_start + branch).split("\n", 1)[0]
                record.large_line = (line_start + l_tok.detokenize(y_l[i:])).split("\n", 1)[0]
                record.label = int(
                    materially_different(record.small_line, record.large_line, in_code=_in_code(before))
                )
            labels.append(record)
    return labels


# -- cascade query records ---------------------------------------------------------------------------
async def record_queries(
    small: Model,
    large: Model,
    tasks: Sequence[Task],
    verifier: Any,
    *,
    max_tokens: int = 512,
    prompt: str | None = None,
) -> list[QueryRecord]:
    """Answer every task with both models, verify both answers, keep the small answer's features.

    The small model's request is the one the ``cascade`` strategy sends, so the features match
    live traffic.
    """

    records: list[QueryRecord] = []
    for task in tasks:
        started = time.perf_counter()
        first = await small.generate(answer_request(task, max_tokens=max_tokens, prompt=prompt))
        small_s = time.perf_counter() - started
        started = time.perf_counter()
        second = await large.generate(
            answer_request(task, max_tokens=max_tokens, prompt=prompt, logprobs=large.capabilities.logprobs)
        )
        large_s = time.perf_counter() - started
        small_verdict = await verifier.verify(task, first.text)
        large_verdict = await verifier.verify(task, second.text)
        records.append(
            QueryRecord(
                task=task.id,
                features=result_features(first, verdict=float(small_verdict.score)),
                small_quality=float(small_verdict.passed),
                large_quality=float(large_verdict.passed),
                small_tokens=len(first.tokens) or first.usage.completion_tokens,
                large_tokens=len(second.tokens) or second.usage.completion_tokens,
                small_seconds=small_s,
                large_seconds=large_s,
            )
        )
    return records
