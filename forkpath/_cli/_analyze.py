"""``forkpath analyze``: analyses of a model's answers.

``forkpath analyze forks`` finds the forking tokens of an answer (``forkpath/_forks.py``)::

    forkpath analyze forks gsm8k/3 --model local/qwen2.5-coder-0.5b --samples 8 --stride 4 \\
        --out runs/forks/gsm8k-3

The base answer is the model's greedy answer unless ``--answer`` gives one. The outcome of a
math task is its extracted final answer; of a code task, the verdict of its tests. Writes
``forks.json`` and ``forks.png`` into ``--out``; continuations are cached in ``--store``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from forkpath._cli._term import LazyConsole, table
from forkpath._errors import ConfigError, ForkpathError

app = typer.Typer(
    rich_markup_mode=None,
    help="Analyse a model's answers (forking tokens).",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("forks")
def forks(
    task_ref: str = typer.Argument(..., help="A dataset task: gsm8k/N or humaneval/N."),
    model_id: str = typer.Option(
        "local/qwen2.5-coder-0.5b", "--model", help="A model with token-level access."
    ),
    answer: str | None = typer.Option(None, "--answer", help="The base answer (default: the greedy answer)."),
    samples: int = typer.Option(8, "--samples", min=1, max=1000, help="Continuations per token index."),
    stride: int = typer.Option(1, "--stride", min=1, max=1000, help="Analyse every k-th token index."),
    max_tokens: int = typer.Option(
        256,
        "--max-tokens",
        min=1,
        max=8192,
        help="Most tokens of an answer (a continuation from token t gets the rest).",
    ),
    threshold: float = typer.Option(0.5, "--threshold", min=0.0, max=1.0, help="TV shift that marks a fork."),
    alpha: float = typer.Option(
        0.05,
        "--alpha",
        min=0.0,
        max=1.0,
        help="Largest permutation-test p-value of a fork's shift (1: no test).",
    ),
    out: Path = typer.Option(Path("runs/forks"), "--out", help="Directory for forks.json and forks.png."),
    store: str | None = typer.Option(
        None, "--store", help="Cache continuations in this store (path or redis://)."
    ),
    threads: int | None = typer.Option(
        None, "--threads", min=1, max=256, help="CPU threads of a local model."
    ),
    parallel: int = typer.Option(
        1,
        "--parallel",
        min=1,
        max=64,
        help="Token indexes resampled at once (their continuations share a batch).",
    ),
) -> None:
    """Resample continuations from each token of an answer and find the tokens that decide its outcome."""
    import asyncio

    from forkpath._cli import fail

    try:
        report = asyncio.run(
            analyze_task(
                task_ref,
                model_id,
                answer=answer,
                samples=samples,
                stride=stride,
                max_tokens=max_tokens,
                threshold=threshold,
                alpha=alpha,
                store_url=store,
                threads=threads,
                parallel=parallel,
            )
        )
    except ForkpathError as e:
        fail(str(e))
        return
    out.mkdir(parents=True, exist_ok=True)
    report.to_json(out / "forks.json")
    report.plot(out / "forks.png")
    console = LazyConsole()
    rows = [
        [
            str(ix.index),
            repr(ix.token),
            str(ix.counts.get(report.base_outcome, 0)),
            str(sum(ix.counts.values())),
        ]
        for ix in report.indexes
        if ix.index in report.forks
    ]
    console.print(f"base outcome {report.base_outcome!r}; forking tokens at {report.forks or 'none'}")
    shared = report.coinciding()
    console.print(
        f"token tree search branch points (top-1 < {report.uncertainty}): {len(report.branch_points)}; "
        f"forks at a branch point: {shared or 'none'}"
    )
    if rows:
        shown = table("index", "token", "base outcome", "of")
        for row in rows:
            shown.add_row(*row)
        console.print(shown)
    console.print(f"wrote {out / 'forks.json'} and {out / 'forks.png'}")


async def analyze_task(
    task_ref: str,
    model_id: str,
    *,
    answer: str | None = None,
    samples: int = 8,
    stride: int = 1,
    max_tokens: int = 256,
    threshold: float = 0.5,
    alpha: float = 0.05,
    store_url: str | None = None,
    threads: int | None = None,
    parallel: int = 1,
) -> Any:
    """``forkpath analyze forks`` without the terminal: the :class:`~forkpath._forks.ForkReport`
    of a dataset task (``bench/forks.py`` runs it over several)."""
    from forkpath import load_task, task_messages
    from forkpath._forks import analyze_forks, verdict_outcome
    from forkpath.models import GenerateRequest, get_model, token_model
    from forkpath.verifiers import extract_answer, verifiers

    task = load_task(task_ref)
    opened = None
    options: dict[str, Any] = {}
    if store_url:
        from forkpath.store import open_store

        opened = open_store(store_url)
        options["cache"] = opened.generation_cache("forks")
    if threads is not None:
        options["n_threads"] = threads
    try:
        model = get_model(model_id, **options)
        tm = token_model(model, by="analyze forks")
        messages = task_messages(task)
        if answer is None:
            result = await model.generate(GenerateRequest(messages=tuple(messages), max_tokens=max_tokens))
            ids = result.token_ids or tm.tokenize(result.text)
        else:
            ids = tm.tokenize(answer)
        if task.kind == "code":
            outcome = verdict_outcome(task, verifiers.create("python_tests"))
        elif task.kind == "math":

            async def outcome(text: str) -> str:
                return extract_answer(text, "number") or "none"

        else:
            raise ConfigError(f"{task_ref}: forks needs a math or code task (its outcome), not {task.kind}")
        report = await analyze_forks(
            model,
            messages,
            ids,
            outcome=outcome,
            samples=samples,
            stride=stride,
            max_tokens=max_tokens,
            threshold=threshold,
            alpha=alpha,
            parallel=parallel,
        )
        report.task = task_ref
        return report
    finally:
        if opened is not None:
            await opened.aclose()
