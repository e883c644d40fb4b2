"""``forkpath report`` and ``forkpath compare``: Markdown and HTML from results.jsonl files."""

from __future__ import annotations

import html
from collections.abc import Collection
from pathlib import Path

from forkpath._errors import ConfigError
from forkpath.batch._metrics import RunMetrics, summarize
from forkpath.batch._records import TaskRecord, check_out_dir, read_records


def _rows(metrics: list[RunMetrics]) -> list[list[str]]:
    rows = [
        [
            "run",
            "tasks",
            "accuracy",
            "pass@k",
            "errors",
            "timeouts",
            "budget-stopped",
            "tokens/task",
            "cost $",
            "p50 s",
            "p90 s",
            "token share",
        ]
    ]
    for m in metrics:
        rows.append(
            [
                m.run_id,
                str(m.tasks),
                f"{m.accuracy:.3f}",
                ", ".join(f"@{k}={v:.3f}" for k, v in m.pass_at.items()) or "-",
                str(m.errors),
                str(m.timeouts),
                str(m.budget_stopped),
                f"{m.tokens_per_task:.0f}",
                f"{m.cost:.4f}",
                f"{m.latency_p50_s:.2f}",
                f"{m.latency_p90_s:.2f}",
                ", ".join(f"{model}: {share:.0%}" for model, share in m.token_share.items()),
            ]
        )
    return rows


def markdown_table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"


def _usage_table(metrics: RunMetrics) -> list[list[str]]:
    rows = [["model", "calls", "cached", "prompt tokens", "completion tokens", "cost $"]]
    for model, u in metrics.usage.items():
        rows.append(
            [
                model,
                str(u.calls),
                str(u.cached_calls),
                str(u.prompt_tokens),
                str(u.completion_tokens),
                f"{u.cost:.4f}",
            ]
        )
    return rows


def _plots(
    run_dirs: list[Path], metrics: list[RunMetrics], records: list[list[TaskRecord]], out: Path
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names: list[str] = []
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for m in metrics:
        x = m.cost if any(mm.cost for mm in metrics) else m.tokens_per_task
        ax.scatter([x], [m.accuracy], s=40)
        ax.annotate(m.run_id, (x, m.accuracy), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("cost $" if any(m.cost for m in metrics) else "tokens per task")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("accuracy versus cost")
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_cost.png", dpi=110)
    plt.close(fig)
    names.append("accuracy_vs_cost.png")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for m, recs in zip(metrics, records, strict=True):
        ax.hist([r.tokens for r in recs], bins=20, alpha=0.6, label=m.run_id)
    ax.set_xlabel("tokens per task")
    ax.set_ylabel("tasks")
    ax.legend(fontsize=7)
    ax.set_title("tokens per task")
    fig.tight_layout()
    fig.savefig(out / "tokens_per_task.png", dpi=110)
    plt.close(fig)
    names.append("tokens_per_task.png")
    return names


def write_report(
    run_dirs: list[Path], out: Path | None = None, *, tasks: Collection[str] | None = None
) -> Path:
    """Write ``report.md`` and ``report.html`` (with plots) into ``out`` (default: the first run dir).

    ``tasks``: report these task ids only (``forkpath batch`` passes the ones it was asked for;
    a folder may also hold records of tasks an earlier invocation was asked for).
    """
    out = out or run_dirs[0]
    records = [read_records(d) for d in run_dirs]
    if tasks is not None:
        wanted = set(tasks)
        records = [[r for r in recs if r.task_id in wanted] for recs in records]
    for d, recs in zip(run_dirs, records, strict=True):
        if not recs:
            raise ConfigError(f"{d}: no results yet (results.jsonl is missing or empty)")
    check_out_dir(out, what="report folder")
    metrics = [summarize(r) for r in records]
    plots = _plots(run_dirs, metrics, records, out)
    summary = _rows(metrics)
    md = ["# forkpath report", "", markdown_table(summary)]
    for m in metrics:
        md += [f"## {m.run_id}: usage per model", "", markdown_table(_usage_table(m))]
    failures = [r for recs in records for r in recs if r.status != "ok"]
    if failures:
        md += [
            "## Tasks that did not finish",
            "",
            markdown_table(
                [["run", "task", "status", "error"]]
                + [[r.run_id, r.task_id, r.status, (r.error or "")[:120]] for r in failures]
            ),
        ]
    md += [f"![{p}]({p})" for p in plots]
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")

    def table_html(rows: list[list[str]]) -> str:
        head, *body = rows
        cells = "".join(f"<th>{html.escape(c)}</th>" for c in head)
        trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
        return f"<table><thead><tr>{cells}</tr></thead><tbody>{trs}</tbody></table>"

    parts = [
        "<!doctype html><meta charset='utf-8'><title>forkpath report</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}</style>",
        "<h1>forkpath report</h1>",
        table_html(summary),
    ]
    for m in metrics:
        parts += [f"<h2>{html.escape(m.run_id)}: usage per model</h2>", table_html(_usage_table(m))]
    parts += [f"<p><img src='{p}' alt='{p}'></p>" for p in plots]
    (out / "report.html").write_text("\n".join(parts), encoding="utf-8")
    return out / "report.md"


def compare_rows(run_dirs: list[Path]) -> list[list[str]]:
    """The summary table of several runs, one row each, for ``forkpath compare``."""
    runs = [(d, read_records(d)) for d in run_dirs]
    for d, recs in runs:
        if not recs:
            raise ConfigError(f"{d}: no results yet (results.jsonl is missing or empty)")
    return _rows([summarize(recs) for _, recs in runs])
