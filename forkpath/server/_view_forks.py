"""What the viewer's page of a forking-token analysis shows (``forkpath analyze forks``'s
``forks.json``): outcome probability over token index as SVG, the forking tokens and token tree
search's branch points marked on it, and the answer's tokens with the same marks.

Everything is drawn on the server from the report (``forkpath._forks.ForkReport``) and escaped
here; the page needs no script (hovering a point or a token shows its numbers through SVG
``<title>`` and the ``title`` attribute).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from forkpath._forks import ForkReport

WIDTH, HEIGHT = 900, 280
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 28, 36
COLOURS = ("#1f5fbf", "#d9480f", "#2b8a3e", "#862e9c", "#c99a06", "#495057")
"""One per outcome line, the base outcome first."""
MAX_LINES = len(COLOURS)


@dataclass
class ForkToken:
    index: int
    text: str
    fork: bool
    branch: bool
    tip: str


def outcomes(report: ForkReport) -> list[str]:
    """The outcomes drawn: the base outcome first, then by how often they occur (at most
    :data:`MAX_LINES`)."""
    totals: dict[str, int] = {}
    for ix in report.indexes:
        for outcome, n in ix.counts.items():
            totals[outcome] = totals.get(outcome, 0) + n
    rest = sorted((o for o in totals if o != report.base_outcome), key=lambda o: (-totals[o], o))
    return [report.base_outcome, *rest][:MAX_LINES]


def chart_svg(report: ForkReport) -> str:
    """Outcome probability over the analysed token indexes: a line per outcome (the base
    outcome bold), forks as red dashed lines labelled with their token, branch points as grey
    dotted ones. Escaped SVG markup."""
    esc = html.escape
    last = max([ix.index for ix in report.indexes] + [len(report.tokens), 1])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: float) -> float:
        return LEFT + plot_w * i / last

    def y(p: float) -> float:
        return TOP + plot_h * (1 - p)

    parts = [
        f'<svg id="forks-chart" class="forks" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        'aria-label="outcome probability over token index">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#ccc"/>',
    ]
    for p in (0.0, 0.5, 1.0):
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(p):.1f}" y2="{y(p):.1f}" stroke="#eee"/>'
        )
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y(p) + 4:.1f}" text-anchor="end">{p:g}</text>')
    step = max(1, round(last / 8))
    for i in range(0, last + 1, step):
        parts.append(
            f'<text class="axis" x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{i}</text>'
        )
    parts.append(
        f'<text class="axis" x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 4}" text-anchor="middle">'
        "token index of the base answer</text>"
    )
    for point in report.branch_points:
        parts.append(
            f'<line class="branch" x1="{x(point):.1f}" x2="{x(point):.1f}" y1="{TOP}" y2="{TOP + plot_h}" '
            'stroke="#888" stroke-dasharray="1 3"/>'
        )
    tokens = {ix.index: ix.token for ix in report.indexes}
    for fork in report.forks:
        label = esc(repr(tokens.get(fork, ""))[1:-1][:12])
        parts.append(
            f'<line class="fork" data-index="{fork}" x1="{x(fork):.1f}" x2="{x(fork):.1f}" y1="{TOP}" '
            f'y2="{TOP + plot_h}" stroke="#e03131" stroke-dasharray="5 3"/>'
        )
        parts.append(
            f'<text class="fork-label" x="{x(fork) + 3:.1f}" y="{TOP - 8}" fill="#e03131">{label}</text>'
        )
    for n, outcome in enumerate(outcomes(report)):
        colour = COLOURS[n]
        points = [(x(ix.index), y(ix.probability(outcome)), ix) for ix in report.indexes]
        if not points:
            continue
        line = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
        bold = 2.6 if outcome == report.base_outcome else 1.2
        parts.append(
            f'<polyline class="outcome" data-outcome="{esc(outcome)}" points="{line}" fill="none" '
            f'stroke="{colour}" stroke-width="{bold}"/>'
        )
        for px, py, ix in points:
            total = sum(ix.counts.values())
            tip = f"index {ix.index} {ix.token!r}: {outcome} {ix.counts.get(outcome, 0)} of {total}"
            parts.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"><title>{esc(tip)}</title></circle>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{o} {n}" for o, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def fork_rows(report: ForkReport) -> list[dict[str, Any]]:
    """One row per forking token: its token, the TV shift and its p-value, the outcomes resampled from its
    index (the token may still change) and from the next analysed one (it is fixed)."""
    at = {ix.index: n for n, ix in enumerate(report.indexes)}
    rows = []
    for fork in report.forks:
        n = at[fork]
        before, after = report.indexes[n], report.indexes[n + 1] if n + 1 < len(report.indexes) else None
        rows.append(
            {
                "index": fork,
                "token": before.token,
                "shift": report.shifts[n] if n < len(report.shifts) else None,
                "p": report.p_values[n] if n < len(report.p_values) else None,
                "before": _counts(before.counts),
                "after": _counts(after.counts) if after is not None else "",
                "branch": fork in report.coinciding(),
            }
        )
    return rows


def fork_tokens(report: ForkReport) -> list[ForkToken]:
    """The base answer's tokens, forks and branch points marked, each with its numbers as a tip."""
    texts = report.tokens or [ix.token for ix in report.indexes if ix.token]
    counted = {ix.index: ix for ix in report.indexes}
    forks, branches = set(report.forks), set(report.branch_points)
    out = []
    for i, text in enumerate(texts):
        tip = f"index {i}"
        if i in counted:
            ix = counted[i]
            total = sum(ix.counts.values())
            tip += (
                f"; resampled here: {report.base_outcome} {ix.counts.get(report.base_outcome, 0)} of {total}"
            )
        if i in forks:
            tip += "; forking token"
        if i in branches:
            tip += "; token tree search branches here"
        out.append(ForkToken(index=i, text=text, fork=i in forks, branch=i in branches, tip=tip))
    return out


def forks_context(report: ForkReport) -> dict[str, Any]:
    """Everything ``forks.html`` shows."""
    lines = outcomes(report)
    return {
        "report": report,
        "chart": chart_svg(report),
        "legend": [(o, COLOURS[n], o == report.base_outcome) for n, o in enumerate(lines)],
        "fork_rows": fork_rows(report),
        "fork_tokens": fork_tokens(report),
        "shared": report.coinciding(),
    }
